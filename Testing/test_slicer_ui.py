"""Structure of the Slicer module without the Slicer application: the panel's .ui against the
code that uses it and the parameter node it binds to, the Qt-free layer staying Qt-free, and
the CMake lists naming every module file."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "CTSuperResolution" / "CTSuperResolution.py"
LIB = REPO / "CTSuperResolution" / "CTSuperResolutionLib"
UI = REPO / "Resources" / "UI" / "CTSuperResolution.ui"


@pytest.fixture(scope="module")
def ui_widgets() -> dict:
    """name -> <widget> element of every widget in the .ui."""
    root = ET.parse(UI).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


@pytest.fixture(scope="module")
def module_tree() -> ast.Module:
    return ast.parse(MODULE.read_text(encoding="utf-8"))


def parameter_fields(tree: ast.Module) -> dict:
    """name -> annotation source of the fields of CTSuperResolutionParameterNode."""
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CTSuperResolutionParameterNode")
    assert any(getattr(d, "id", None) == "parameterNodeWrapper" for d in cls.decorator_list)
    return {s.target.id: ast.unparse(s.annotation) for s in cls.body if isinstance(s, ast.AnnAssign)}


def panel_state_fields(tree: ast.Module) -> tuple:
    """The module's ``_PANEL_STATE_FIELDS``: parameter node fields bound to no widget."""
    assign = next(n for n in tree.body if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], "id", None) == "_PANEL_STATE_FIELDS")
    return ast.literal_eval(assign.value)


def bound_parameters(widgets: dict) -> dict:
    """parameter name -> widget name, from the SlicerParameterName dynamic properties."""
    bound = {}
    for name, widget in widgets.items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", f"{name}: SlicerParameterName must be a dynamic property"
                bound[prop.findtext("string")] = name
    return bound


def test_every_widget_the_code_uses_exists_in_the_ui(ui_widgets):
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE.read_text(encoding="utf-8")))
    assert used, "the widget code should reach its widgets through self.ui"
    assert used <= set(ui_widgets), f"missing from the .ui: {sorted(used - set(ui_widgets))}"


def test_parameter_names_in_the_ui_match_the_parameter_node(ui_widgets, module_tree):
    fields = parameter_fields(module_tree)
    bound = bound_parameters(ui_widgets)
    state = panel_state_fields(module_tree)
    assert set(state) <= set(fields) and set(bound) == set(fields) - set(state)
    fields = {name: annotation for name, annotation in fields.items() if name not in state}
    kinds = {name: ui_widgets[widget].get("class") for name, widget in bound.items()}
    for name, annotation in fields.items():
        if "vtkMRML" in annotation:
            assert kinds[name] == "qMRMLNodeComboBox", name
        elif annotation == "bool":
            assert kinds[name] == "QCheckBox", name
        elif "Choice" in annotation:
            assert kinds[name] == "QComboBox", name
        elif annotation.startswith("Annotated[int"):
            assert kinds[name] == "QSpinBox", name


def test_node_selectors_accept_scalar_volumes_only(ui_widgets):
    for name in ("inputSelector", "outputSelector"):
        props = {p.get("name"): p for p in ui_widgets[name].findall("property")}
        assert [s.text for s in props["nodeTypes"].iter("string")] == ["vtkMRMLScalarVolumeNode"]
        assert props["showChildNodeTypes"].findtext("bool") == "false"  # no label maps
    output = {p.get("name"): p for p in ui_widgets["outputSelector"].findall("property")}
    assert output["noneEnabled"].findtext("bool") == "true"  # "Create new volume" by default


def test_node_selectors_get_the_scene(ui_widgets):
    root = ET.parse(UI).getroot()
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    selectors = {n for n, w in ui_widgets.items() if w.get("class") == "qMRMLNodeComboBox"}
    assert selectors <= receivers


def test_the_log_is_collapsible_and_read_only(ui_widgets):
    log = ui_widgets["logCollapsibleButton"]
    assert log.get("class") == "ctkCollapsibleButton"
    assert "logTextEdit" in {w.get("name") for w in log.iter("widget")}
    read_only = [p for p in ui_widgets["logTextEdit"].findall("property") if p.get("name") == "readOnly"]
    assert [p.findtext("bool") for p in read_only] == ["true"]


def test_module_has_the_template_classes(module_tree):
    classes = {n.name: [ast.unparse(b) for b in n.bases] for n in module_tree.body if isinstance(n, ast.ClassDef)}
    assert classes["CTSuperResolution"] == ["ScriptedLoadableModule"]
    assert classes["CTSuperResolutionWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert classes["CTSuperResolutionLogic"][0] == "ScriptedLoadableModuleLogic"
    assert "CTSuperResolutionLogicBase" in classes["CTSuperResolutionLogic"]
    assert classes["CTSuperResolutionTest"] == ["ScriptedLoadableModuleTest"]


def test_qt_free_layer_imports_no_qt_or_application_classes():
    forbidden = {"qt", "ctk", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper", "PythonQt"}
    for path in LIB.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            assert not forbidden & set(names), f"{path.name} imports {names}"


def test_cmake_lists_every_module_file():
    listed = (REPO / "CTSuperResolution" / "CMakeLists.txt").read_text()
    for path in sorted(LIB.glob("*.py")):
        assert f"${{MODULE_NAME}}Lib/{path.name}" in listed, path.name
    top = (REPO / "CMakeLists.txt").read_text()
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS",
                     "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS",
                     "EXTENSION_DEPENDS"):
        assert f"set({variable} " in top, variable
    assert "add_subdirectory(CTSuperResolution)" in top


def test_resources_the_module_loads_exist():
    text = MODULE.read_text(encoding="utf-8")
    for relative in re.findall(r'resourcePath\("([^"]+)"\)', text):
        assert (REPO / "Resources" / relative).is_file(), relative


def test_roi_selector_takes_markups_rois_and_defaults_to_the_whole_volume(ui_widgets):
    props = {p.get("name"): p for p in ui_widgets["roiSelector"].findall("property")}
    assert [s.text for s in props["nodeTypes"].iter("string")] == ["vtkMRMLMarkupsROINode"]
    assert props["noneEnabled"].findtext("bool") == "true"


def test_uncertainty_runs_sit_in_the_advanced_section_and_start_off(ui_widgets, module_tree):
    advanced = ui_widgets["advancedCollapsibleButton"]
    assert advanced.get("class") == "ctkCollapsibleButton"
    assert "uncertaintySpinBox" in {w.get("name") for w in advanced.iter("widget")}
    props = {p.get("name"): p for p in ui_widgets["uncertaintySpinBox"].findall("property")}
    assert props["minimum"].findtext("number") == "0" and props["specialValueText"].findtext("string") == "off"
    cls = next(n for n in module_tree.body if isinstance(n, ast.ClassDef) and n.name == "CTSuperResolutionParameterNode")
    defaults = {s.target.id: ast.unparse(s.value) for s in cls.body if isinstance(s, ast.AnnAssign) and s.value}
    assert defaults["uncertaintyRuns"] == "0" and defaults["roi"] == "None"


def test_an_older_slicer_is_refused_with_one_sentence_before_anything_needs_a_newer_one(module_tree):
    """Slicer 5.6 / 5.8 embed Python 3.9: the version check runs first, in code that Python 3.9
    parses, before the module imports what those versions lack."""
    import ast
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "engine_alone", REPO / "CTSuperResolution" / "CTSuperResolutionLib" / "engine.py")
    engine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(engine)  # stdlib only at import time, as in an old Slicer
    for path in (REPO / "CTSuperResolution" / "CTSuperResolutionLib" / "__init__.py",
                 REPO / "CTSuperResolution" / "CTSuperResolutionLib" / "engine.py"):
        ast.parse(path.read_text(), feature_version=(3, 9))
    with pytest.raises(ImportError, match=r"needs Slicer 5\.10 or later \(this is Slicer 5\.8\)"):
        engine.check_slicer_version(5, 8)
    engine.check_slicer_version(5, 10)
    engine.check_slicer_version(6, 0)
    statements = module_tree.body
    check = next(i for i, s in enumerate(statements) if "check_slicer_version(" in ast.unparse(s)
                 and isinstance(s, ast.Expr))
    roi_import = next(i for i, s in enumerate(statements) if "vtkMRMLMarkupsROINode" in ast.unparse(s))
    assert check < roi_import
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in cmake
    assert "Slicer 5.10 or later" in (REPO / "README.md").read_text()

"""The extension's CMake build lays out the module, the engine and the Resources so that the
module works from a build or an installed extension as from the source tree.

Configures the real top-level ``CMakeLists.txt`` with CMake against a minimal stand-in for
Slicer's CMake package: it defines the folder variables and the two file-placing macros the
build uses (``ctkMacroCompilePythonScript``, ``slicerMacroBuildScriptedModule``) with the
placement rule of the real ones (each file copied to DESTINATION_DIR / its path relative to
SOURCE_DIR; no byte compilation). Then the module's logic runs a real job from that folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES_DIR = "lib/Slicer-5.10/qt-scripted-modules"

SLICER_CONFIG = f"""
set(Slicer_USE_FILE ${{CMAKE_CURRENT_LIST_DIR}}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${{CMAKE_CURRENT_LIST_DIR}}/empty.cmake)
set(Slicer_EXTENSION_CPACK ${{CMAKE_CURRENT_LIST_DIR}}/empty.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR {MODULES_DIR})
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR {MODULES_DIR})
"""

USE_SLICER = """
macro(ctkMacroCompilePythonScript)
  cmake_parse_arguments(MY "NO_INSTALL_SUBDIR;GLOBAL_TARGET"
    "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS;RESOURCES" ${ARGN})
  if(NOT MY_SOURCE_DIR)
    set(MY_SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  foreach(f IN LISTS MY_SCRIPTS MY_RESOURCES)
    if(NOT EXISTS ${MY_SOURCE_DIR}/${f})
      message(FATAL_ERROR "listed but missing: ${MY_SOURCE_DIR}/${f}")
    endif()
    configure_file(${MY_SOURCE_DIR}/${f} ${MY_DESTINATION_DIR}/${f} COPYONLY)
  endforeach()
endmacro()
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS;WITH_SUBDIR" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  ctkMacroCompilePythonScript(TARGET_NAME ${MY_NAME} SCRIPTS "${MY_SCRIPTS}"
    RESOURCES "${MY_RESOURCES}" DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}
    INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR} NO_INSTALL_SUBDIR)
endmacro()
macro(slicer_add_python_unittest)
endmacro()
"""

RUN_FROM_BUILD = """
import sys
modules = sys.argv[1]
sys.path.insert(0, modules)
from CTSuperResolutionLib.engine import ensure_engine_importable
ensure_engine_importable(modules)
import ctsr, ctsr.resources, slicer
from CTSuperResolutionLib import nodes
from CTSuperResolutionLib.logic import CTSuperResolutionLogicBase
from ctsr.io import read_volume
assert ctsr.__file__.startswith(modules), ctsr.__file__
assert str(ctsr.resources.sample_volume_path()).startswith(modules)
slicer.mrmlScene = scene = slicer.vtkMRMLScene()
node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
nodes.update_node_from_volume(node, read_volume(ctsr.resources.sample_volume_path()))
out = CTSuperResolutionLogicBase(modules).process(node, scale="1x1x2", method="trilinear")
print(out.GetName(), out.GetImageData().GetDimensions())
"""


@pytest.fixture(scope="module")
def build_tree(tmp_path_factory) -> Path:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    root = tmp_path_factory.mktemp("extension")
    stub = root / "SlicerStub"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(SLICER_CONFIG)
    (stub / "UseSlicer.cmake").write_text(USE_SLICER)
    (stub / "empty.cmake").write_text("")
    done = subprocess.run([cmake, "-S", str(REPO), "-B", str(root / "build"), f"-DSlicer_DIR={stub}",
                           "-DBUILD_TESTING=ON"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "build" / MODULES_DIR


def test_build_tree_holds_module_engine_and_resources_side_by_side(build_tree):
    for relative in ("CTSuperResolution.py", "CTSuperResolutionLib/logic.py", "ctsr/__init__.py",
                     "ctsr/worker.py", "Resources/UI/CTSuperResolution.ui",
                     "Resources/Icons/CTSuperResolution.png", "Resources/requirements.txt",
                     "Resources/SampleData/CTChestCrop.nrrd"):
        assert (build_tree / relative).is_file(), relative
    engine = {p.relative_to(REPO / "Logic") for p in (REPO / "Logic" / "ctsr").rglob("*.py")}
    assert engine <= {p.relative_to(build_tree) for p in (build_tree / "ctsr").rglob("*.py")}


def test_module_runs_a_job_from_the_build_tree(build_tree):
    done = subprocess.run([sys.executable, "-c", RUN_FROM_BUILD, str(build_tree)], capture_output=True,
                          text=True, timeout=300, cwd=build_tree.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["CT_SRx1x1x2", "(64,", "64,", "128)"]

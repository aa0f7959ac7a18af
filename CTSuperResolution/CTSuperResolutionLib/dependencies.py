"""Which of the engine's requirements (``Resources/requirements.txt``) this Python lacks.

Slicer ships numpy, scipy, SimpleITK and VTK built for itself; replacing them breaks Slicer, so
they are never offered for installation (:data:`SHIPPED_WITH_SLICER`) and are not listed in the
requirements file. torch goes through the PyTorch extension (``PyTorchUtils``, declared in
``EXTENSION_DEPENDS``), which picks the build for the user's GPU driver; never plain pip.
Installing (which needs the Slicer application) is done by the module file, after one
confirmation that lists everything (:class:`InstallPlan`); this part decides what and how.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

#: Distributions that Slicer builds and ships; never installed or upgraded by this extension.
SHIPPED_WITH_SLICER = frozenset({"numpy", "scipy", "simpleitk", "vtk"})


def canonical_name(name: str) -> str:
    """PEP 503 normalized distribution name (``SimpleITK`` -> ``simpleitk``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path) -> list[str]:
    """The requirement lines of a requirements file (comments and blank lines dropped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


#: The distribution name at the start of a requirement line.
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(requirement: str) -> str:
    """The distribution name of a requirement line (``torch>=2.1`` -> ``torch``)."""
    return canonical_name(_NAME.match(requirement).group(1))


def is_satisfied(requirement: str) -> bool:
    """True if the requirement's distribution is installed in a version it accepts (without
    the ``packaging`` library, being installed is enough)."""
    try:
        installed = metadata.version(requirement_name(requirement))
    except metadata.PackageNotFoundError:
        return False
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return True
    return Requirement(requirement).specifier.contains(installed, prereleases=True)


def missing_requirements(requirements) -> list[str]:
    """The requirements not satisfied here, excluding what Slicer ships (never replaced)."""
    return [r for r in requirements
            if requirement_name(r) not in SHIPPED_WITH_SLICER and not is_satisfied(r)]


@dataclass
class InstallPlan:
    """What to install: ``torch`` (the requirement, through the PyTorch extension) or None, and
    ``pip`` (the other requirements, through Slicer's pip); ``installed`` maps a requirement
    that is present in a version it does not accept to that version (an upgrade)."""

    torch: str | None = None
    pip: list = field(default_factory=list)
    installed: dict = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.torch is None and not self.pip

    @property
    def requirements(self) -> list:
        """Everything to install, torch first."""
        return ([self.torch] if self.torch else []) + self.pip

    def describe(self) -> str:
        """One line per package for the confirmation dialog."""
        lines = []
        for requirement in self.requirements:
            how = "with the PyTorch extension (the build for this computer's GPU)" \
                if requirement == self.torch else "with pip"
            now = self.installed.get(requirement)
            lines.append(f"{requirement} ({'upgrade from ' + now + ', ' if now else ''}{how})")
        return "\n".join(lines)


def plan_installation(requirements) -> InstallPlan:
    """The :class:`InstallPlan` for the requirements this Python does not satisfy."""
    plan = InstallPlan()
    for requirement in missing_requirements(requirements):
        try:
            plan.installed[requirement] = metadata.version(requirement_name(requirement))
        except metadata.PackageNotFoundError:
            pass
        if requirement_name(requirement) == "torch":
            plan.torch = requirement
        else:
            plan.pip.append(requirement)
    return plan


def torch_version_requirement(requirement: str) -> str | None:
    """``"torch>=2.1"`` -> ``">=2.1"`` (what ``PyTorchUtilsLogic.installTorch`` takes)."""
    spec = requirement[_NAME.match(requirement).end():].strip()
    return spec or None


def find_pip_ensure():
    """Slicer's ``pip_ensure`` where this Slicer has one (``slicer.packaging`` from 5.12,
    ``slicer.pydeps`` in Slicer's development line: imported explicitly, not found by luck),
    else None (older Slicer: the module falls back to ``slicer.util.pip_install``)."""
    for name in ("slicer.packaging", "slicer.pydeps"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "pip_ensure"):
            return module.pip_ensure
    return None


def call_pip_ensure(pip_ensure, requirements, requester: str) -> None:
    """Call a Slicer ``pip_ensure`` for ``requirements`` (strings) after our own confirmation:
    its own prompt is turned off and the requester named where its signature takes them (the
    signature changed between Slicer versions); requirements are passed as
    ``packaging.requirements.Requirement`` when it annotates them so, else as strings."""
    import inspect

    parameters = inspect.signature(pip_ensure).parameters
    options = {name: False for name in ("prompt_install", "prompt") if name in parameters}
    if "requester" in parameters:
        options["requester"] = requester
    first = next(iter(parameters.values()), None)
    wants_objects = first is not None and "Requirement" in str(first.annotation)
    if wants_objects:
        from packaging.requirements import Requirement

        requirements = [Requirement(r) for r in requirements]
    pip_ensure(list(requirements), **options)

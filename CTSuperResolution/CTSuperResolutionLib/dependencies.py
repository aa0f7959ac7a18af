"""Which of the engine's requirements (``Resources/requirements.txt``) this Python lacks.

Slicer ships numpy, SimpleITK and VTK built for itself; replacing them breaks Slicer, so they
are never offered for installation (:data:`SHIPPED_WITH_SLICER`) and are not listed in the
requirements file. Installing (which needs the Slicer application) is done by the module
file; this part only decides what is missing.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

#: Distributions that Slicer builds and ships; never installed or upgraded by this extension.
SHIPPED_WITH_SLICER = frozenset({"numpy", "simpleitk", "vtk"})


def canonical_name(name: str) -> str:
    """PEP 503 normalized distribution name (``SimpleITK`` -> ``simpleitk``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path) -> list[str]:
    """The requirement lines of a requirements file (comments and blank lines dropped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def requirement_name(requirement: str) -> str:
    """The distribution name of a requirement line (``torch>=2.1`` -> ``torch``)."""
    return canonical_name(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


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

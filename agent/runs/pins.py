"""The build requirements a commit's era needs on this interpreter (Python 3.11), for compiled repositories whose
environments come from the package index alone.

A repository declares what its build needs in pyproject.toml's [build-system] `requires`, but often as its own era
understood it: an exact pin of a Cython or numpy that predates Python 3.11 (no wheels, generated C that no longer
compiles), `oldest-supported-numpy` (a meta-package that picks numpy 1.2x from before 3.11), or no bound at all on a
package whose later majors dropped what the code relies on (numpy 2's C API, Cython 3's semantics, setuptools'
distutils and bdist_wheel). era_pins() rewrites the list: too-old exact pins are raised to the first release that
works here, and open-ended requirements are capped at the series current on the commit's day. A cap matters twice:
an environment sees perfagent's own packages, and pip takes a newer numpy there as satisfying an open requirement.
"""
from __future__ import annotations

import configparser
import re
import sys
import tomllib
from typing import Mapping

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

# the first release of each package that builds and runs on this interpreter's Python
_FIRST_FOR_PYTHON = {(3, 11): {"numpy": "1.23.2", "cython": "0.29.32", "pyerfa": "2.0.0.1", "scipy": "1.9.2"}}
FLOORS = _FIRST_FOR_PYTHON.get(sys.version_info[:2], {})
# A release that broke older code, with its day: a commit from before it gets `<version`.
ERAS = {
    # 1.24 and 1.25 expired deprecations (1.24: np.int, np.float); 2.0 a new C API; each 2.x removes what 2.(x-2)
    # deprecated (2.4: np.in1d)
    "numpy": [("2022-12-18", "1.24"), ("2023-06-17", "1.25"), ("2024-06-16", "2"), ("2024-08-18", "2.1"),
              ("2024-12-08", "2.2"), ("2025-06-07", "2.3")],
    "cython": [("2023-07-17", "3"), ("2025-05-08", "3.1")],  # 3.0 changed semantics; 3.1 dropped old syntax
    "setuptools": [("2021-12-19", "60"), ("2022-08-09", "65"), ("2024-07-28", "72")],  # 60: its own distutils;
    # 72: no more `setup.py test` (which older setup.py files import)
    "extension-helpers": [("2022-03-21", "1")],
    # 7.2 warns on nose-style setup/teardown methods (an error where warnings are), 8 removed their support
    "pytest": [("2022-10-23", "7.2"), ("2024-01-27", "8")],
}
TEST_TOOLS = ["pytest"]  # run the repository's tests: capped for its era like its build requirements
_RENAMED = {"oldest-supported-numpy": "numpy"}  # a meta-package of pins from before this interpreter


BUILD_FILES = ("pyproject.toml", "setup.cfg", "setup.py")  # what build_requires reads


def build_requires(files: Mapping[str, str], cython: bool = False) -> tuple[list[str], str | None]:
    """The build requirements and backend of a project whose build files (BUILD_FILES) hold `files` (name -> text):
    pyproject.toml's [build-system] `requires` and `build-backend`. A project without them builds with setuptools'
    legacy backend and needs what it would have setuptools fetch from the network mid-build: setup.cfg's
    `setup_requires`, numpy when its setup.py names it (for its headers), and Cython when it has .pyx sources
    (`cython`: a checkout holds no generated C)."""
    pyproject = files.get("pyproject.toml", "")
    system = tomllib.loads(pyproject).get("build-system", {}) if pyproject else {}
    if "requires" in system:
        return list(system["requires"]), system.get("build-backend")
    config = configparser.ConfigParser(interpolation=None)
    try:
        config.read_string(files.get("setup.cfg", ""))
    except configparser.Error:
        pass  # pip would fail on it with its own error
    listed = config.get("options", "setup_requires", fallback="")
    requires = ["setuptools", "wheel", *(r.strip() for r in re.split(r"[;\n]", listed) if r.strip())]
    named = {canonicalize_name(re.split(r"[^\w.-]", r, maxsplit=1)[0]) for r in requires}
    if re.search(r"\bnumpy\b", files.get("setup.py", "")) and "numpy" not in named:
        requires.append("numpy")
    if cython and "cython" not in named:
        requires.append("cython")
    return requires, system.get("build-backend")


def setup_command(files: Mapping[str, str], day: str, cython: bool = False) -> str:
    """How to build a repository in place with pip: its build requirements (build_requires) pinned for `day`, then
    the repository without build isolation (and its test extras, with the era's pytest), the pins repeated so that
    nothing installed with it moves them."""
    pins = " ".join(f"'{p}'" for p in era_pins(build_requires(files, cython)[0], day))
    tests = "".join(f" '{p}'" for p in era_pins(TEST_TOOLS, day) if p not in TEST_TOOLS)  # only where capped
    return (f"python -m pip install --quiet {pins} && python -m pip install --quiet --no-build-isolation "
            f"-e '.[test,tests,testing]' {pins}{tests}")


def era_pins(requires: list[str], day: str) -> list[str]:
    """`requires` as pip requirements that fit this interpreter and a commit made on `day` (YYYY-MM-DD): markers
    that do not apply dropped, exact pins below this Python's first release replaced by it, open
    upper ends capped at the day's series; `wheel` added for setuptools, whose builds before 70.1 need it."""
    pins: dict[str, str] = {}
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue  # not something pip could install either
        if req.marker and not req.marker.evaluate():
            continue
        declared = canonicalize_name(req.name)
        name = _RENAMED.get(declared, declared)
        pins[name] = name + _specifier(name, [] if declared in _RENAMED else [str(s) for s in req.specifier], day)
    if "setuptools" in pins and "wheel" not in pins:
        pins["wheel"] = "wheel"
    return list(pins.values())


def _specifier(name: str, specs: list[str], day: str) -> str:
    floor = FLOORS.get(name)
    if floor and any(s.startswith("==") and Version(s[2:].rstrip(".*")) < Version(floor) for s in specs):
        specs = []  # the pinned release predates this Python: its era's newest, below
    if floor and not any(s.startswith(("==", ">")) for s in specs):
        specs.append(f">={floor}")
    # the cap of the commit's day: the first release after it that broke older code, or after that the first one
    # past what the requirement itself asks for (a pre-release of the next series, as astropy asked numpy 2.0.0rc1)
    floors = [_release(spec) for spec in specs if spec.startswith(">")]
    cap = next((version for until, version in ERAS.get(name, []) if day < until
                and all(floor < Version(version) for floor in floors)), None)
    # none for an exact requirement or an upper bound as low; a looser one (numpy<3) still lets the later series in
    if cap and not any(s.startswith(("==", "~=")) or s.startswith("<") and _release(s) <= Version(cap) for s in specs):
        specs.append(f"<{cap}")
    return ",".join(sorted(specs))


def _release(spec: str) -> Version:
    """The release a bound names, without its pre-release part (>=2.0.0rc1 -> 2.0.0)."""
    return Version(Version(spec.lstrip("<>=!").rstrip(".*")).base_version)

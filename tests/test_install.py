"""The install requirements: pyproject.toml declares a torch *range*, constraints.txt pins the tested release.

Nothing here downloads anything. The specifier tests read pyproject.toml and check the range with
`packaging`; the resolver tests run pip's real resolver offline (`--dry-run --no-index`) on the
project's metadata (built by setuptools from a copy of pyproject.toml, or carried by a stand-in wheel
where setuptools is not installed), with stand-in torch wheels of the versions under test in a
temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the `test` extra installs tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
TESTED = Version("2.13.0")  # what constraints.txt pins and CI runs
NEWER = Version("2.14.1")  # a later 2.x release the range must accept


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def torch_requirement() -> Requirement:
    found = [Requirement(r) for r in project()["dependencies"] if Requirement(r).name == "torch"]
    assert len(found) == 1, f"pyproject.toml should list torch once among the dependencies, found {found}"
    return found[0]


def oldest_declared() -> Version:
    floors = [Version(s.version) for s in torch_requirement().specifier if s.operator in (">=", "~=", "==")]
    assert floors, f"the torch requirement {torch_requirement()} declares no oldest version"
    return max(floors)


def test_torch_is_a_range_not_a_pin():
    spec = torch_requirement().specifier
    assert not any(s.operator in ("==", "===") for s in spec), f"torch is pinned ({spec}); pins belong in constraints.txt"
    for version in (oldest_declared(), TESTED, NEWER, Version("2.13.0+cpu")):
        assert spec.contains(version, prereleases=False), f"torch {version} should satisfy {spec}"
    for version in (Version("3.0"), Version("3.0.0"), Version("3.1"), Version("1.13.1")):
        assert not spec.contains(version, prereleases=True), f"torch {version} should not satisfy {spec}"
    assert oldest_declared() < TESTED


def test_constraints_pin_the_tested_torch_inside_the_range():
    pins = [
        Requirement(line.split("#")[0].strip())
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    torch_pins = [p for p in pins if p.name == "torch"]
    assert [str(p.specifier) for p in torch_pins] == [f"=={TESTED}"], torch_pins
    assert torch_requirement().specifier.contains(TESTED)


def test_makefile_installs_through_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*-c constraints\.txt .*-e '\.\[test\]'", makefile), makefile
    assert "torch==" not in makefile, "the Makefile should take the torch pin from constraints.txt"


# --- pip's resolver, offline -------------------------------------------------------------------


def fake_wheel(folder: Path, name: str, version: str, requires: list[str] = ()) -> None:
    """A wheel holding only metadata: enough for `pip install --dry-run` to resolve it, never installed."""
    stem = f"{name.replace('-', '_')}-{version}"  # a wheel's file name escapes "-" in the project name
    dist = f"{stem}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    wheel = "Wheel-Version: 1.0\nGenerator: tests/test_install.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(folder / f"{stem}-py3-none-any.whl", "w") as archive:
        archive.writestr(f"{dist}/METADATA", metadata)
        archive.writestr(f"{dist}/WHEEL", wheel)
        archive.writestr(f"{dist}/RECORD", f"{dist}/METADATA,,\n{dist}/WHEEL,,\n{dist}/RECORD,,\n")


def pip_resolve(tmp_path: Path, torch_version: str) -> tuple[subprocess.CompletedProcess, str]:
    """Resolve the project's requirements together with `torch==torch_version`, offline, installing nothing.

    With setuptools installed, the project is a copy of pyproject.toml with an empty package, its
    metadata built by the real build backend (--no-build-isolation). Without it, a stand-in wheel
    carries the `dependencies` of pyproject.toml as its Requires-Dist. Either way the other
    dependencies are satisfied by what this environment has installed, and torch can only come from
    the stand-in torch wheel. Returns pip's result and the name the project resolves under.
    """
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fake_wheel(wheels, "torch", torch_version)
    try:
        import setuptools  # noqa: F401

        source = tmp_path / "project"
        (source / "src" / "latefusion").mkdir(parents=True)
        (source / "src" / "latefusion" / "__init__.py").write_text("")
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            shutil.copy(ROOT / name, source / name)
        shutil.copytree(ROOT / "LICENSES", source / "LICENSES")
        target, name = [str(source), "--no-build-isolation"], "latefusion"
    except ModuleNotFoundError:
        name = "latefusion-requirements"  # not "latefusion": the installed package would stand in for it
        fake_wheel(wheels, name, "0", project()["dependencies"])
        target = [f"{name}==0"]
    # No configuration file and no PIP_* variable: no index, no extra find-links, no machine constraints.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    command = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-",
        "--no-index", "--find-links", str(wheels), *target, f"torch=={torch_version}",
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120), name


@pytest.fixture(scope="module")
def pip_ok():
    try:
        version = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        version = None
    if version is None or version.returncode != 0:
        pytest.skip("pip is not available in this environment, so its resolver cannot be run")
    found = re.search(r"pip (\d+)\.(\d+)", version.stdout)
    if not found or (int(found[1]), int(found[2])) < (22, 2):
        pytest.skip(f"pip {version.stdout.split()[1]} lacks --dry-run/--report (pip >= 22.2)")


@pytest.mark.parametrize("which", ["oldest", "newer"])
def test_pip_accepts_other_torch_releases(tmp_path, pip_ok, which):
    torch_version = str(oldest_declared() if which == "oldest" else NEWER)
    result, name = pip_resolve(tmp_path, torch_version)
    assert result.returncode == 0, f"pip could not resolve the project with torch {torch_version}:\n{result.stderr}"
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.loads(result.stdout)["install"]}
    assert chosen.get("torch") == torch_version, chosen
    assert name in chosen, chosen


def test_pip_refuses_torch_3(tmp_path, pip_ok):
    result, _ = pip_resolve(tmp_path, "3.0.0")
    assert result.returncode != 0, "pip resolved the project with torch 3.0.0, which the range excludes"
    assert "ResolutionImpossible" in result.stderr or "conflict" in result.stderr.lower(), result.stderr

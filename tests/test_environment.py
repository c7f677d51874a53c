"""The conda environment and the package metadata pin the same versions, and the environment the
tests run in has exactly those versions installed (importlib.metadata)."""
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_pins() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        reqs += extra
    return dict(r.split("==", 1) for r in reqs)


def _environment_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s*-\s*([A-Za-z0-9_.\-]+)==(\S+)\s*$", line)
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


def test_every_pyproject_requirement_is_an_exact_pin():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in meta["dependencies"]:
        assert "==" in req, f"pyproject.toml: {req!r} is not pinned with =="


def test_environment_yml_matches_pyproject():
    assert _environment_pins() == _pyproject_pins()


def test_every_pin_is_the_installed_version():
    pins = _pyproject_pins()
    assert {"torch", "torchvision", "timm", "fvcore", "pytest"} <= set(pins)
    installed = {}
    for name in pins:
        try:
            installed[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed[name] = None
    wrong = {name: (pins[name], installed[name]) for name in pins if installed[name] != pins[name]}
    assert not wrong, f"pinned vs installed: {wrong} (pip install -e '.[notebooks,test,tensorboard]' from pyproject.toml)"


def test_python_versions_satisfy_requires_python():
    from packaging.specifiers import SpecifierSet  # pytest's own dependency

    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    conda = re.search(r"^\s*-\s*python=(\d+\.\d+)\s*$", (ROOT / "environment.yml").read_text(), re.M)
    assert conda, "environment.yml names no python=X.Y"
    assert spec.contains(conda.group(1) + ".0"), f"environment.yml's python {conda.group(1)} is outside {spec}"
    running = ".".join(map(str, sys.version_info[:3]))
    assert spec.contains(running), f"the tests run on python {running}, outside {spec}"

"""The conda environment and the package metadata pin the same versions."""
import re
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


def test_torch_pins_are_the_ones_this_machine_installs():
    pins = _pyproject_pins()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"

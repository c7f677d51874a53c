"""The house: rooms import only downwards, no cycles (function-level imports included), modules stay
small, the package root holds only its face, the README map and docs/ match the tree.

The import graph is read from the source with ``ast`` here, independently of the package."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pna"
# Bottom to top: a room may import only rooms to its left (and itself).
ROOMS = ["errors", "paths", "files", "ops", "refiners", "models", "data", "configs", "authors", "engine", "runs", "inference", "analysis", "tools", "cli"]
ROOT_MODULES = {"__init__", "__main__", "errors", "paths"}
MAX_LINES = 300
# The design documents outside the repository that code once cited (spelled in pieces, so that this
# file does not cite them itself).
OUTSIDE_DOCUMENTS = re.compile("|".join(re.escape(name) for name in ("SPEC" + ".md", "AUTHORS_CHECKPOINTS" + ".md",
                                                                       "shared" + "/design")))


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """pna modules that ``name`` imports anywhere in its file (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            candidates = [stem] + [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name and candidate != "pna":
                targets.add(candidate)
    return targets


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_rooms_import_only_downwards():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        room = _room(name)
        if room in ("__init__", "__main__"):
            continue
        for target in _imports(name, path, modules):
            if ROOMS.index(_room(target)) > ROOMS.index(room):
                upward.append(f"{name} -> {target}")
    assert not upward, f"imports from a higher room: {upward}"


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # a parent package importing its own submodules is how packages expose them: not a cycle
    graph = {a: {b for b in targets if not b.startswith(a + ".") and not a.startswith(b + ".")}
             for a, targets in graph.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(graph.get(node, ()))
        return False

    cycles = sorted({" <-> ".join(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})
    assert not cycles, f"import cycles: {cycles}"


def test_the_package_root_holds_only_its_face_and_modules_stay_small():
    assert {p.stem for p in PACKAGE.glob("*.py")} <= ROOT_MODULES
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ROOMS) - {"errors", "paths"}
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_readme_map_names_every_room_and_only_rooms_that_exist():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Where things are"):]
    section = section[: section.index("\n## ", 4)]
    named = set(re.findall(r"`pna/(\w+)/`", section))
    assert named == set(ROOMS) - {"errors", "paths"}
    for module in re.findall(r"`(pna/\w+\.py)`", section):
        assert (ROOT / module).is_file(), module


def test_code_cites_docs_in_the_repository_only():
    cited = set()
    for path in list(PACKAGE.rglob("*.py")) + list((ROOT / "tests").glob("*.py")) + list((ROOT / "notebooks").glob("*.ipynb")):
        text = path.read_text()
        assert not OUTSIDE_DOCUMENTS.search(text), path
        cited |= set(re.findall(r"docs/([\w.]+\.(?:md|csv))", text))
    assert cited, "no code cites docs/"
    missing = sorted(c for c in cited if not (ROOT / "docs" / c).is_file())
    assert not missing, f"cited but not in docs/: {missing}"


@pytest.mark.parametrize("command", ["train", "evaluate", "rehearse", "reproduce", "cost", "fidelity", "prepare", "plan", "submit", "predict"])
def test_every_command_has_help(command, capsys):
    from pna.cli import dispatch

    with pytest.raises(SystemExit) as done:
        dispatch([command, "--help"])
    assert done.value.code == 0 and "usage: pna " + command in capsys.readouterr().out


def test_pna_prepare_offers_every_converter_in_data_prep():
    """`pna prepare`'s list is written out (the parser must not import data_prep): it must name
    exactly the converter modules data_prep/ holds (each with a main())."""
    from pna.cli.prepare import CONVERTERS

    modules = sorted(p.stem for p in (ROOT / "data_prep").glob("*.py") if p.stem not in ("__init__", "common"))
    assert sorted(CONVERTERS) == modules
    for name in modules:
        assert "def main(" in (ROOT / "data_prep" / f"{name}.py").read_text(), name

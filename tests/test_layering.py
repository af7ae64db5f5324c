"""The package's imports point down the data flow of DESIGN.md, and no two modules import each
other (directly or round a loop), lazily or not.

Read from the source with ``ast``, so an import hidden inside a function counts as much as one at
the top: a lazy import is how a cycle hides, not how it goes away.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import archiver

PACKAGE = Path(archiver.__file__).parent
# lowest first: a module may import its own subpackage, the root modules and lower subpackages
SUBPACKAGES = ("archive", "api", "polling", "audit", "reporting", "sim", "cli")
# the root modules, lowest first: each may import only those before it
ROOT = (
    "wording",
    "errors",
    "retry",
    "statuses",
    "sqltypes",
    "fields",
    "ids",
    "config",
    "models",
    "db",
)
ENTRY_POINTS = {"archiver.__main__"}  # ``python -m archiver`` runs the CLI: the very top


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(("archiver", *parts)), path


def _imports(name: str, path: Path) -> set[str]:
    """Every ``archiver`` module ``path`` imports (``from archiver import x`` names module x)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "archiver")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            if base.split(".")[0] != "archiver":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m != name}


MODULES = dict(_modules())
GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _rank(module: str) -> tuple[int, int]:
    """(layer, position within the root): root modules are layer 0, subpackages 1…, CLI top."""
    parts = module.split(".")
    if module in ENTRY_POINTS:
        return (len(SUBPACKAGES) + 2, 0)
    if len(parts) == 1:  # the package itself: __version__ and a docstring
        return (0, -1)
    if parts[1] in ROOT and len(parts) == 2:
        return (0, ROOT.index(parts[1]))
    if parts[1] == "migrations":  # run by Alembic, imported by nothing of the package
        return (len(SUBPACKAGES) + 1, 0)
    return (1 + SUBPACKAGES.index(parts[1]), 0)


def test_every_module_is_placed_in_a_layer() -> None:
    unplaced = []
    for module in MODULES:
        try:
            _rank(module)
        except ValueError:
            unplaced.append(module)
    assert unplaced == [], "add these to SUBPACKAGES or ROOT (and to DESIGN's picture)"


def test_imports_point_down() -> None:
    upward = []
    for module, imported in GRAPH.items():
        layer, position = _rank(module)
        for target in imported:
            t_layer, t_position = _rank(target)
            same_subpackage = layer == t_layer and layer > 0
            if same_subpackage:
                continue
            if (t_layer, t_position) >= (layer, position):
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt not in GRAPH:
                continue
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(GRAPH):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_checker_sees_an_upward_and_a_lazy_import(tmp_path: Path) -> None:
    """The rules above would pass vacuously if the import reader missed imports."""
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from archiver.cli import common\n    import archiver.sim.demo\n")
    assert _imports("archiver.archive.lazy", lazy) == {"archiver.cli.common", "archiver.sim.demo"}
    relative = tmp_path / "rel.py"
    relative.write_text("from . import payload\nfrom ..polling import sync\n")
    assert _imports("archiver.archive.rel", relative) == {
        "archiver.archive.payload",
        "archiver.polling.sync",
    }
    assert _rank("archiver.archive.payload") < _rank("archiver.polling.sync")
    assert _rank("archiver.errors") < _rank("archiver.models") < _rank("archiver.archive.chain")


def test_test_file_names_are_unique() -> None:
    """The tests have no packages (no ``__init__.py``): pytest imports each file by its base
    name, so two ``test_listing.py`` in two folders stop the whole run at collection."""
    from collections import Counter
    from pathlib import Path

    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []

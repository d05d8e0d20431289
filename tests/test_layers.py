"""The code is laid out in layers that import downward only, and no module imports in a cycle.

config (models) -> render (pure renderers) -> checks (across them) -> components (resources)
-> __main__.py (the program) -> tools (offline plan, fleet, reference). The policy pack and the
tests stand beside the tools.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("config", "render", "checks", "components", "__main__", "tools")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Project modules a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in LAYERS}


def _sources() -> dict[str, Path]:
    files = [ROOT / "__main__.py"]
    for layer in LAYERS:
        files += sorted((ROOT / layer).glob("*.py")) if (ROOT / layer).is_dir() else []
    return {_module_name(path): path for path in files}


def test_every_layer_imports_only_its_own_layer_or_those_below() -> None:
    wrong: list[str] = []
    for module, path in _sources().items():
        own = LAYERS.index(module.split(".")[0])
        for imported in sorted(_imports(path)):
            if LAYERS.index(imported.split(".")[0]) > own:
                wrong.append(f"{module} imports {imported}")
    assert wrong == []


def test_no_module_imports_itself_through_a_cycle() -> None:
    sources = _sources()
    graph = {m: {i for i in _imports(p) if i in sources and i != m} for m, p in sources.items()}
    cycles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        for nxt in sorted(graph[module]):
            if nxt in trail:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif len(trail) < len(graph):
                visit(nxt, [*trail, nxt])

    for module in sorted(graph):
        visit(module, [module])
    assert cycles == []


def test_the_layer_check_sees_a_violation_when_one_exists(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("from components.slots import build_slots\nimport tools.plan\n")
    assert _imports(bad) == {"components.slots", "tools.plan"}

"""The layers of the house: padcore computes, pipelines and components wrap it in KFP, pad (the CLI) sits on top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> top-level packages it must never import (at module level or inside a function)
FORBIDDEN = {
    "padcore": {"pad", "pipelines", "components", "kfp"},
    "components": {"pad", "pipelines"},
    "pipelines": {"pad"},
}


def imports(path: Path) -> set[str]:
    """Every module name an `import` or `from ... import` in the file names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_never_import_higher_ones(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imports(path):
            if name.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_padcore_modules_import_no_cycle():
    """padcore's modules form a DAG (e.g. analysis uses report, report never analysis)."""
    files = {".".join(p.relative_to(ROOT / "padcore").with_suffix("").parts).removesuffix(".__init__"): p
             for p in (ROOT / "padcore").rglob("*.py")}
    graph = {m: {n.removeprefix("padcore.") for n in imports(p) if n.startswith("padcore.")} & set(files) - {m}
             for m, p in files.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])

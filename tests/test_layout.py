"""The layout holds: no import cycles in the library (imports inside functions count too), the
library never imports the benchmarks, the app's views or Streamlit, and every module imports."""
import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "dosmatgen_core"


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(PKG.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every module the file imports, at any depth of the file (functions included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)   # `from pkg import module`
        elif isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail(f"{path}: relative import; the package uses absolute imports")
    return out


def _graph() -> dict[str, set[str]]:
    return {m: {i for i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state, cycle = {}, []

    def visit(m, stack):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycle.extend(stack[stack.index(n):] + [n])
                return True
            if n not in state and visit(n, stack + [n]):
                return True
        state[m] = "done"
        return False

    for m in sorted(graph):
        if m not in state and visit(m, [m]):
            break
    return cycle


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_library_has_no_import_cycle():
    cycle = find_cycle(_graph())
    assert not cycle, " -> ".join(cycle)


def test_the_library_imports_no_benchmark_no_app_view_and_no_streamlit():
    for m, p in MODULES.items():
        bad = {i for i in _imports(p) if i.split(".")[0] in ("benchmarks", "studio", "streamlit", "pages")}
        assert not bad, f"{m} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_every_module_imports(name):
    importlib.import_module(name)

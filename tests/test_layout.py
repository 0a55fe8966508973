"""The library's shape: no import cycles, the entry points sit on top (nothing in the library imports them), and
no module or function grows past what a reader takes in at once (~500 lines, ~80 lines)."""
import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "diger_lib"
ENTRY_POINTS = {"pipeline", "runner", "cli", "distributed"}  # called by notebooks, tests, benchmarks, torchrun, the shell


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in LIB.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):  # function-level imports count too
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        graph[path.stem] = deps
    return graph


def test_no_import_cycles():
    graph, state, cycles = _graph(), {}, []

    def visit(u, stack):
        state[u] = "open"
        for v in sorted(graph.get(u, ())):
            if state.get(v) == "open":
                cycles.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v, stack + [v])
        state[u] = "done"

    for u in sorted(graph):
        if u not in state:
            visit(u, [u])
    assert not cycles, cycles


def test_no_upward_imports():
    graph = _graph()
    for module, deps in graph.items():
        assert not (deps & ENTRY_POINTS) or module in ENTRY_POINTS, f"{module} imports the entry point {deps & ENTRY_POINTS}"


def test_modules_and_functions_stay_small():
    for path in LIB.glob("*.py"):
        text = path.read_text()
        assert len(text.splitlines()) <= 500, f"{path.name} has {len(text.splitlines())} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                assert n <= 80, f"{path.name}:{node.name} has {n} lines"

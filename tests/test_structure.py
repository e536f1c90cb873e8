"""The shape of the code in ``vqa/`` and ``pipelines/``, read with ``ast`` (nothing is imported).

- no import cycle between project modules (module-level imports: ``import vqa...``, ``from vqa... import``,
  relative imports);
- no import of a project module inside a function (a cycle hidden from the first rule);
- no module over MAX_MODULE_LINES lines, no function (or method) over MAX_FUNCTION_LINES lines, the ``def`` line to
  the last line of its body, docstring included.

Each test lists every offender in its message.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("vqa", "pipelines")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50


@dataclass(frozen=True)
class Module:
    name: str  # dotted: vqa.data.synth.pages, pipelines.train
    path: Path
    tree: ast.Module
    lines: int

    @property
    def package(self) -> str:
        """The package a relative import starts from."""
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    @property
    def where(self) -> str:
        return str(self.path.relative_to(REPO))


def load_modules() -> dict[str, Module]:
    modules = {}
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            text = path.read_text(encoding="utf-8")
            modules[".".join(parts)] = Module(".".join(parts), path, ast.parse(text, str(path)), len(text.splitlines()))
    return modules


MODULES = load_modules()


def imported(module: Module, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The project modules an import statement loads: ``from pkg import name`` -> ``pkg.name`` when that is a
    module, else ``pkg``; ``import a.b`` -> ``a.b``. Modules outside the project are dropped."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in MODULES else origin for a in node.names]
    return sorted({t for t in targets if t in MODULES and t != module.name})


def function_scopes(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def own_nodes(f: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.AST]:
    """The nodes of ``f``'s body, not descending into the functions defined inside it."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = list(f.body)
    while todo:
        node = todo.pop()
        out.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo += ast.iter_child_nodes(node)
    return out


def module_level_imports(module: Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements outside every function: the module body, its if/try blocks and class bodies."""
    inside = {id(n) for f in function_scopes(module.tree) for n in ast.walk(f)}
    return [n for n in ast.walk(module.tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in inside]


def import_graph() -> dict[str, set[str]]:
    return {
        name: {t for node in module_level_imports(m) for t in imported(m, node)} for name, m in MODULES.items()
    }


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (the import cycles), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def shortest_cycle(graph: dict[str, set[str]], start: str, members: set[str]) -> list[str]:
    """The shortest import path from ``start`` back to itself inside one component (breadth first)."""
    paths = {w: [start, w] for w in sorted(graph[start] & members)}
    queue = list(paths)
    while queue:
        v = queue.pop(0)
        if v == start:
            return paths[v]
        for w in sorted(graph[v] & members):
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError(f"{start} is in a component without a cycle through it")


def test_the_project_modules_were_found() -> None:
    assert {"vqa", "vqa.config", "vqa.data.synth", "pipelines.train"} <= set(MODULES)
    assert "vqa.config" in import_graph()["vqa.cli"], "the import graph must see `from .config import ...`"


def test_no_import_cycle_between_project_modules() -> None:
    graph = import_graph()
    cycles = [
        f"{' -> '.join(shortest_cycle(graph, c[0], set(c)))} (modules in this cycle: {', '.join(c)})"
        for c in strongly_connected(graph)
    ]
    assert not cycles, f"{len(cycles)} import cycle(s) between project modules:\n" + "\n".join(cycles)


def test_no_project_import_inside_a_function() -> None:
    offenders: list = []
    for m in MODULES.values():
        for f in function_scopes(m.tree):
            for node in own_nodes(f):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and imported(m, node):
                    offenders.append((m.where, node.lineno, f"in {f.name}(): {ast.unparse(node)}"))
    offenders = [f"{where}:{line} {what}" for where, line, what in sorted(offenders)]
    assert not offenders, f"{len(offenders)} project import(s) inside functions:\n" + "\n".join(offenders)


def test_no_module_over_the_line_limit() -> None:
    offenders = [f"{m.where}: {m.lines} lines" for m in MODULES.values() if m.lines > MAX_MODULE_LINES]
    assert not offenders, f"{len(offenders)} module(s) over {MAX_MODULE_LINES} lines:\n" + "\n".join(offenders)


def test_no_function_over_the_line_limit() -> None:
    offenders = []
    for m in MODULES.values():
        for f in function_scopes(m.tree):
            n = (f.end_lineno or f.lineno) - f.lineno + 1
            if n > MAX_FUNCTION_LINES:
                offenders.append(f"{m.where}:{f.lineno} {f.name}(): {n} lines")
    assert not offenders, f"{len(offenders)} function(s) over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)


TASK_QUESTIONS = re.compile(r'task ==|regions is None|"boxes" in|type == "which"')


def test_only_the_task_modules_ask_which_task_it_is() -> None:
    """Telling vs pointing is decided once (``vqa.tasks``); everything else asks the task object, so a third task is
    one new module and not a hunt for branches."""
    offenders = [f"{m.where}:{i}: {line.strip()}" for m in load_modules().values()
                 if not m.name.startswith("vqa.data.tasks")
                 for i, line in enumerate(m.path.read_text().splitlines(), 1) if TASK_QUESTIONS.search(line)]
    head = f"{len(offenders)} line(s) ask which task it is outside vqa/data/tasks:"
    assert not offenders, "\n".join([head, *offenders])

"""The house rules of issue 15 part 2, read from the source itself: no import cycles, a docstring
for every package, and no module over MAX_LINES without a reason written at its top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "patchbot"
TESTS = Path(__file__).resolve().parents[1]
MAX_LINES = 400
LONG_REASON = "Why this is long:"  # in the module docstring of a module over MAX_LINES


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent)
        if {"fixtures", "templates"} & set(relative.parts):
            continue  # the package data symlinks: the sample project is not patchbot
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every patchbot module this one imports, at the top or inside a function (an import in a
    function dodges a cycle at run time, not in the design)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from patchbot.commands import apply` imports the module patchbot.commands.apply
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                       for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in modules and target != name}
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_import_cycles_are_found():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    cycles = import_cycles(graph)
    assert not cycles, "import cycles (each a set of modules that import one another):\n" + "\n".join(
        "  " + " <-> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize("package", sorted(p.parent.relative_to(PACKAGE.parent).as_posix()
                                           for p in PACKAGE.rglob("__init__.py")
                                           if not {"fixtures", "templates"} & set(p.relative_to(PACKAGE).parts)))
def test_every_package_says_its_job(package):
    docstring = ast.get_docstring(ast.parse((PACKAGE.parent / package / "__init__.py").read_text()))
    assert docstring and docstring.strip(), f"{package}/__init__.py has no docstring saying the package's one job"


def test_long_modules_say_why():
    too_long = []
    for name, path in _modules().items():
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_LINES and LONG_REASON not in (ast.get_docstring(ast.parse(text)) or ""):
            too_long.append(f"{path.relative_to(PACKAGE.parent)}: {lines} lines")
    assert not too_long, (f"modules over {MAX_LINES} lines without a '{LONG_REASON}' paragraph in their docstring: "
                          + ", ".join(too_long))


def test_every_module_says_its_job():
    silent = [str(path.relative_to(PACKAGE.parent)) for path in _modules().values()
              if not ast.get_docstring(ast.parse(path.read_text()))]
    assert not silent, f"modules without a docstring: {silent}"


def test_tests_mirror_the_code_without_packages():
    assert not list(TESTS.rglob("__init__.py")), "tests are not packages: pytest imports them by basename"
    seen: dict[str, Path] = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        assert path.name not in seen, f"{path} and {seen[path.name]}: test basenames must be unique"
        seen[path.name] = path

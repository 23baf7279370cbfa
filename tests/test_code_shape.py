"""Every public function of the package stays readable: at most 60 lines and 8 parameters.

An options object counts as one parameter. Typer command functions are exempt from the
parameter count: their options are parameters by the framework's convention. A function
is public when neither it nor a class or function around it starts with an underscore
(functions of ``_``-modules count: the packages re-export them).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "faceaudit"
MAX_LINES = 60
MAX_PARAMETERS = 8


def _is_typer_command(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
               for d in node.decorator_list)


def oversized(source: str, where: str) -> tuple[list[str], int]:
    """The public functions of ``source`` over the limits, and how many public functions it has."""
    found, seen = [], 0

    def visit(node, scope: list[str]):
        nonlocal seen
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, [*scope, child.name])
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = ".".join([*scope, child.name])
                if not any(part.startswith("_") for part in [*scope, child.name]):
                    seen += 1
                    a = child.args
                    params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
                    lines = child.end_lineno - child.lineno + 1
                    if lines > MAX_LINES:
                        found.append(f"{where}:{child.lineno} {name}: {lines} lines")
                    if len(params) > MAX_PARAMETERS and not _is_typer_command(child):
                        found.append(f"{where}:{child.lineno} {name}: {len(params)} parameters")
                visit(child, [*scope, child.name])

    visit(ast.parse(source), [])
    return found, seen


def test_the_checker_flags_what_it_should():
    long_body = "\n".join(f"    x{i} = {i}" for i in range(60))
    source = (f"def long():\n{long_body}\n"
              "def wide(a, b, c, d, e, f, g, h, i):\n    pass\n"
              "def _private(a, b, c, d, e, f, g, h, i):\n    pass\n"
              "class Public:\n    def method(self, a, b, c, d, e, f, g, h):\n        pass\n"
              "@app.command()\ndef command(a, b, c, d, e, f, g, h, i):\n    pass\n")
    found, seen = oversized(source, "example.py")
    assert found == ["example.py:1 long: 61 lines", "example.py:62 wide: 9 parameters"]
    assert seen == 4  # long, wide, Public.method (8 parameters besides self), command


def test_public_functions_are_short_and_narrow():
    found, seen = [], 0
    for path in sorted(PACKAGE.rglob("*.py")):
        problems, count = oversized(path.read_text(), str(path.relative_to(PACKAGE.parent)))
        found += problems
        seen += count
    assert seen > 300, f"only {seen} public functions found: is the package where the test looks?"
    assert not found, "split these, or pass an options object:\n" + "\n".join(found)

"""The string literals of a module's source, for tests that check where a name may be spelt."""
from __future__ import annotations

import ast
from collections.abc import Iterator


def string_literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every string constant and f-string (its literal parts joined, "{" for each value) of a
    module, with its line; docstrings are prose and left out."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{"
                                       for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs:
            yield node.lineno, node.value

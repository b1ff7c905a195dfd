"""Rules the package keeps by convention, checked on its source: every BENCHMARK_* variable is
read in environment.py only."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import mribench

PKG = Path(mribench.__file__).resolve().parent
# a whole string that is a variable's name: what reading it needs (help texts say more words)
_VARIABLE = re.compile(r"^\$?BENCHMARK_[A-Z0-9_]+$")


def _environment_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for each BENCHMARK_* name spelt as a string, and each os.environ / getenv
    access whose key is a BENCHMARK_* literal."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and _VARIABLE.match(node.value):
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):  # f"BENCHMARK_{name}"
            head = node.values[0] if node.values else None
            if isinstance(head, ast.Constant) and str(head.value).endswith("BENCHMARK_"):
                out.append((node.lineno, ast.unparse(node)))
    return out


def test_only_environment_py_reads_benchmark_variables():
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if path == PKG / "environment.py":
            continue
        for line, what in _environment_reads(ast.parse(path.read_text())):
            offenders.append(f"{path.relative_to(PKG)}:{line}: {what}")
    assert offenders == [], "read BENCHMARK_* variables through mribench.environment:\n" \
        + "\n".join(offenders)


def test_the_scan_finds_a_direct_read():
    # the rule above is only as good as its scan: each way of spelling a read is caught
    for source in ('import os\nos.environ.get("BENCHMARK_X")\n',
                   'import os\nNAME = "BENCHMARK_X"\nos.getenv(NAME)\n',
                   'import os\nos.environ[f"BENCHMARK_{k}"]\n'):
        assert _environment_reads(ast.parse(source)), source
    # a help text naming the variable is not a read
    assert not _environment_reads(ast.parse('HELP = "default: $BENCHMARK_DATA_DIR, ./data"\n'))

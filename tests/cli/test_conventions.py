"""Rules the package keeps by convention, checked on its source: every BENCHMARK_* variable is
read in environment.py only; every module, file or function a docstring or comment names exists."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import mribench

PKG = Path(mribench.__file__).resolve().parent
REPO = PKG.parent.parent
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


# `mribench.x.y` and `x/y.py` as docstrings and comments name them
_DOTTED = re.compile(r"\bmribench(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_FILE = re.compile(r"(?<![\w/.])((?:[a-z_][a-z0-9_]*/)*[a-z_][a-z0-9_]*\.py)\b")
# other projects' files, named for the design they lend (registry.py: torchvision's, timm's)
_ELSEWHERE = {"models/_api.py", "_registry.py"}


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the module's docstrings and comments."""
    text = path.read_text()
    out = [(getattr(node, "lineno", 1), ast.get_docstring(node, clean=False))
           for node in ast.walk(ast.parse(text))
           if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    out = [(line, doc) for line, doc in out if doc]
    out += [(i, line[line.index("#"):]) for i, line in enumerate(text.splitlines(), 1)
            if "#" in line]
    return out


def _defines(source: Path, name: str) -> bool:
    tree = ast.parse(source.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name
                                                 for t in node.targets):
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
                (a.asname or a.name) == name for a in node.names):
            return True
    return False


def _dotted_exists(dotted: str) -> bool:
    """`mribench.a.b.c`: the longest prefix that is a module, then a name it defines."""
    parts = dotted.split(".")[1:]
    for k in range(len(parts), -1, -1):
        module = (PKG / Path(*parts[:k])).with_suffix(".py") if k else None
        package = PKG.joinpath(*parts[:k], "__init__.py")
        source = module if module is not None and module.is_file() else package
        if not source.is_file():
            continue
        rest = parts[k:]
        return not rest or _defines(source, rest[0])
    return False


def _file_exists(name: str, where: Path) -> bool:
    if name in _ELSEWHERE:
        return True
    if any((base / name).is_file() for base in (PKG, where.parent, REPO, REPO / "tools")):
        return True
    return any(p.as_posix().endswith("/" + name)
               for base in (PKG, REPO / "tests") for p in base.rglob("*.py"))


def test_docstrings_name_modules_that_exist():
    stale = []
    for path in sorted(PKG.rglob("*.py")):
        for line, text in _prose(path):
            stale += [f"{path.relative_to(PKG)}:{line}: {d}" for d in _DOTTED.findall(text)
                      if not _dotted_exists(d)]
            stale += [f"{path.relative_to(PKG)}:{line}: {f}" for f in _FILE.findall(text)
                      if not _file_exists(f, path)]
    assert stale == [], "docstrings or comments name what does not exist:\n" + "\n".join(stale)


def test_the_name_check_sees_a_stale_name():
    assert _dotted_exists("mribench.config.paths.parse")
    assert not _dotted_exists("mribench.config.paths.no_such_function")
    assert not _dotted_exists("mribench.no_such_module")
    assert _file_exists("config/paths.py", PKG / "config" / "axis.py")
    assert not _file_exists("report_plots.py", PKG / "report" / "tables.py")

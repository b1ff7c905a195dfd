"""The package's shape: a light command line, no import circles, folders instead of prefixes."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mribench

PKG = Path(mribench.__file__).resolve().parent
HEAVY = ("torch", "torchvision", "timm", "mlflow", "sklearn", "scipy", "pandas", "PIL",
         "matplotlib", "pydantic")


def test_the_parser_and_every_help_import_nothing_heavy():
    # a fresh interpreter: what building the parser and answering --help pulls in
    code = f"""
import json, sys
from mribench.cli.main import build_parser
parser = build_parser()
for argv in ([], ["suite"], ["tune"], ["report"], ["data"], ["data", "audit"], ["models"],
             ["models", "describe"], ["perf"], ["schema"]):
    try:
        parser.parse_args([*argv, "--help"])
    except SystemExit:
        pass
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({list(HEAVY)!r}))))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=PKG.parent)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def _module_imports(path: Path, name: str) -> set[str]:
    """mribench modules `name` imports, at module level or inside a function alike.

    An import inside a function is lazy, but it still makes one module depend on another, so it
    counts. Only imports under `if TYPE_CHECKING:` are left out: they never run.
    """
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = {id(n) for node in ast.walk(tree) if _type_checking_only(node)
               for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("mribench")}
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            if not module.startswith("mribench"):
                continue
            for alias in node.names:  # `from mribench.x import y`: y may be a module
                sub = f"{module}.{alias.name}"
                out.add(sub if _exists(sub) else module)
    return out


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """`from .x import y` inside `package` names `package.x`; `from .. import y` its parent."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _exists(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (PKG / rel).with_suffix(".py").exists() or (PKG / rel / "__init__.py").exists()


def _name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_no_import_circles():
    graph = {_name(p): _module_imports(p, _name(p)) for p in PKG.rglob("*.py")}
    # a package's __init__ runs before its modules: importing mribench.a.b imports mribench.a
    for mod in list(graph):
        graph[mod] = {t for t in graph[mod] if t != mod and t in graph}
    state: dict[str, int] = {}
    cycles = []

    def visit(mod: str, stack: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [mod, dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert cycles == [], "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_prefix_stands_in_for_a_folder():
    for folder in [PKG, *[p for p in PKG.iterdir() if (p / "__init__.py").exists()]]:
        names = [p.stem for p in folder.glob("*.py") if p.stem != "__init__" and "_" in p.stem]
        shared = {k: n for k, n in Counter(name.split("_")[0] for name in names).items() if n > 1}
        assert shared == {}, f"{folder.name}: modules share a prefix {shared}: make it a folder"

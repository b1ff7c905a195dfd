"""Every shell example in README.md and docs/ runs in a test or is marked as needing something
this machine may not have, and then parses: the convention is an HTML comment on the line
before the fenced block (docs/development.md, "Examples in the docs"):

    <!-- example: runs ... -->       the README's: run here, from a temporary folder
    <!-- example: needs WHAT ... --> needs a GPU, network, data, a server or a finished run
    <!-- example: synopsis -->       a usage line: [optional parts] in brackets

Marked blocks are checked: each `mribench` line against the real parser (and a suite name
against the shipped suites), each `mlflow run . -e E -P k=v` against the MLproject."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from mribench.cli.main import build_parser
from mribench.config.schema import SUITES_DIR
from mribench.data.registry import SAMPLE_DIR
from real_data import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- example: (?P<mark>[^\n]*?) -->\n)?```(?P<lang>bash|console|sh|shell)"
                   r"\n(?P<body>.*?)```", re.S)
SEPARATORS = {"&&", "||", ";", "|"}


def blocks() -> list[tuple[str, str, str, str]]:
    """(where, mark, lang, body) of every shell block of the README and the docs."""
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            line = text[:m.start("lang")].count("\n") + 1
            out.append((f"{page.relative_to(ROOT)}:{line}", m.group("mark") or "", m.group("lang"),
                        m.group("body")))
    return out


def commands(lang: str, body: str) -> list[list[str]]:
    """The commands of a block as token lists: console blocks' `$ ` lines, every line of the
    others; continuations joined, comments dropped, `a && b` split, VAR=value prefixes dropped."""
    lines, joined, pending = body.splitlines(), [], ""
    for line in lines:
        if lang == "console" and not pending:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    out = []
    for line in joined:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:  # a quoted string spread over lines (a python -c program)
            continue
        current: list[str] = []
        for tok in [*tokens, ";"]:
            if tok in SEPARATORS:
                while current and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", current[0]):
                    current.pop(0)
                if current:
                    out.append(current)
                current = []
            else:
                current.append(tok)
    return out


def check_mribench(argv: list[str], synopsis: bool) -> str | None:
    """None when the command parses as the docs show it, else what is wrong."""
    if synopsis:
        argv = [a.strip("[]") for a in argv if a.strip("[]")]
    if "..." in argv:
        return "an argument is cut off ('...')"
    # a shell variable stands for a value: a task index 0, anything else 2 (`--shard 0/2`)
    argv = [re.sub(r"\$\{?\w*(ID|INDEX)\w*\}?", "0", a) for a in argv]
    argv = [re.sub(r"\$\{?\w+\}?", "2", a) for a in argv]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit as stop:
        return None if stop.code == 0 else f"does not parse (exit {stop.code})"  # 0: --help
    name = getattr(args, "suite", None)
    if argv[0] in ("suite", "tune", "report") and name:
        shipped = {p.stem for p in SUITES_DIR.glob("*.yaml")}
        if not (name in shipped or name.endswith(".yaml") or name.isupper()):
            return f"suite {name!r} is neither shipped, a .yaml file nor a placeholder"
    return None


def check_mlflow_run(argv: list[str]) -> str | None:
    project = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    entry = argv[argv.index("-e") + 1] if "-e" in argv else "main"
    if entry not in project:
        return f"MLproject has no entry point {entry!r}"
    params = [argv[i + 1].partition("=")[0] for i, a in enumerate(argv) if a == "-P"]
    unknown = [p for p in params if p not in project[entry]["parameters"]]
    return f"entry point {entry!r} has no parameter(s) {unknown}" if unknown else None


def test_every_shell_example_is_marked_and_the_marked_ones_parse():
    found = blocks()
    assert len(found) > 30
    problems = []
    for where, mark, lang, body in found:
        kind = (re.match(r"(runs|needs|synopsis)\b", mark) or [""])[0]
        if not kind:
            problems.append(f"{where}: no <!-- example: runs|needs ...|synopsis --> line above")
            continue
        for argv in commands(lang, body):
            if argv[0] == "mribench":
                why = check_mribench(argv[1:], kind == "synopsis")
            elif argv[:2] == ["mlflow", "run"]:
                why = check_mlflow_run(argv)
            else:
                continue
            if why:
                problems.append(f"{where}: `{shlex.join(argv)}`: {why}")
    assert problems == []


def test_the_checks_catch_what_went_wrong_before():
    """The README once showed `mribench report demo --register` (no such suite) and an
    `evaluate` cut at `--prediction-map ...`."""
    assert "neither shipped" in check_mribench(["report", "demo", "--register", "x"], False)
    assert "cut off" in check_mribench(["evaluate", "models:/x@y", "--dataset", "d",
                                        "--prediction-map", "..."], False)
    assert "does not parse" in check_mribench(["suite", "smoke", "--epochz", "3"], False)
    assert check_mribench(["data", "list", "[--json]"], True) is None
    assert "no parameter" in check_mlflow_run(["mlflow", "run", ".", "-e", "suite", "-P", "x=1"])
    assert commands("console", "$ a --b \\\n  c  # note\nout put\n$ X=1 mribench d && e f\n") \
        == [["a", "--b", "c"], ["mribench", "d"], ["e", "f"]]


@pytest.fixture(scope="module")
def tour(tmp_path_factory) -> dict:
    """The README's five-minute tour as written, with the installed script, from a temporary
    folder with no data and no settings: the smoke suite, then every `runs` block."""
    tmp = tmp_path_factory.mktemp("tour")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "BENCHMARK_"))}
    env |= {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "HOME": str(tmp)}
    readme = [(where, mark, lang, body) for where, mark, lang, body in blocks()
              if where.startswith("README")]
    smoke = next(argv for _, _, lang, body in readme for argv in commands(lang, body)
                 if argv[:3] == ["mribench", "suite", "smoke"])
    lines = [smoke] + [argv for _, mark, lang, body in readme if mark.startswith("runs")
                       for argv in commands(lang, body)]
    assert len(lines) >= 2
    done = []
    for argv in lines:
        run = subprocess.run([shutil.which("mribench"), *argv[1:]], cwd=tmp, env=env,
                             capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"{shlex.join(argv)}:\n{run.stderr[-3000:]}"
        done.append(run)
    return {"tmp": tmp, "env": env, "runs": done}


def test_the_readme_tour_runs_as_written(tour):
    suite = tour["runs"][0].stdout
    assert "run_id" in suite and "parent_run_id:" in suite
    assert (tour["tmp"] / "reports" / "smoke" / "index.html").is_file()  # as the README says
    assert "Traceback" not in "".join(r.stderr for r in tour["runs"])


def test_a_suite_run_id_given_to_predict_lists_its_cells_and_says_how_to_pick_one(tour):
    parent = re.search(r"parent_run_id: ([0-9a-f]{32})", tour["runs"][0].stdout).group(1)
    image = next((SAMPLE_DIR / "Testing" / "glioma").iterdir())
    exe = shutil.which("mribench")
    listed = subprocess.run([exe, "predict", parent, str(image)], cwd=tour["tmp"],
                            env=tour["env"], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 2
    cells = re.findall(r"^\s+([0-9a-f]{32})\s", listed.stderr, re.M)
    assert len(cells) == 2 and parent not in cells
    assert "--model" in listed.stderr and "--strategy" in listed.stderr
    picked = subprocess.run([exe, "predict", parent, str(image), "--model", "test_resnet",
                             "--strategy", "scratch", "--seed", "0", "--json"], cwd=tour["tmp"],
                            env=tour["env"], capture_output=True, text=True, timeout=300)
    assert picked.returncode == 0, picked.stderr[-2000:]
    assert json.loads(picked.stdout)["rows"][0]["path"].endswith(image.name)

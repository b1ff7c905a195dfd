"""The documentation as a newcomer meets it: a README that fits a screen, a site that builds with
no broken link, a reference generated from the code and up to date, and a suite schema that
editors can trust (every shipped suite valid, a misspelt key flagged)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from mribench.config import strict_yaml
from mribench.config.suite_file import SuiteError, load_suite, parse_suite
from real_data import ROOT

SUITES = sorted((ROOT / "suites").glob("*.yaml"))
SCHEMA_LINE = "# yaml-language-server: $schema=suite.schema.json"
MAX_README_LINES = 250


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / "suites" / "suite.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _problems(validator, data) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(data)]


def test_generated_reference_and_schema_are_up_to_date():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_docs.py"), "--check"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_every_shipped_suite_points_at_the_schema_and_is_valid_by_it(path, validator):
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == SCHEMA_LINE, f"{path.name}: the first line must be {SCHEMA_LINE}"
    assert _problems(validator, strict_yaml.load(text)) == []
    load_suite(path)  # and the loader still takes it, comment line and all


def test_a_misspelt_key_is_flagged_by_the_schema_as_by_the_loader(validator):
    smoke = strict_yaml.load((ROOT / "suites" / "smoke.yaml").read_text())
    top = {**smoke, "trainig": smoke["training"]}
    del top["training"]
    assert _problems(validator, top) == ["$: Additional properties are not allowed "
                                         "('trainig' was unexpected)"]
    with pytest.raises(SuiteError, match="trainig"):
        parse_suite(top)
    # deeper down too: a head key, and a model's training overrides (a mapping the loader checks
    # against the training block; the schema says the same)
    nested = yaml.safe_load(yaml.safe_dump(smoke))
    nested["models"][0]["head"] = {"type": "gap_mlp", "hiden": 64}
    nested["models"][1]["training"] = {"lrr": 0.1}
    assert sorted(_problems(validator, nested)) == [
        "$.models[0].head: Additional properties are not allowed ('hiden' was unexpected)",
        "$.models[1].training: Additional properties are not allowed ('lrr' was unexpected)"]
    # a value outside its allowed set is flagged as well
    bad_value = {**smoke, "split": {"protocol": "random"}}
    assert len(_problems(validator, bad_value)) == 1


def test_nulls_set_from_the_command_line_and_yaml_anchors_are_valid(validator):
    """`--set datasets.0.fallback=null` and `--set training.max_loss=null` give suites the
    schema must take; anchors and merge keys are resolved before either check sees the data."""
    suite = parse_suite(strict_yaml.load((ROOT / "suites" / "smoke.yaml").read_text()),
                        overrides={"datasets.0.fallback": None, "training.max_loss": None})
    assert suite.training.max_loss is None
    data = strict_yaml.load((ROOT / "suites" / "smoke.yaml").read_text())
    data["datasets"][0]["fallback"] = None
    data["training"]["max_loss"] = None
    assert _problems(validator, data) == []
    anchored = strict_yaml.load("""
name: anchors
datasets: [{name: brain-tumor-mri-7023}]
models:
  - &base {name: test_resnet, head: {type: gap_mlp, hidden: 32}}
  - <<: *base
    name: test_efficientnet
strategies: [scratch, {name: partial, blocks: 1}]
""")
    assert _problems(validator, anchored) == []
    assert [m.name for m in parse_suite(anchored).models] == ["test_resnet", "test_efficientnet"]


def test_the_schema_command_writes_the_committed_schema(tmp_path):
    mribench = Path(sys.executable).parent / "mribench"
    out = tmp_path / "suite.schema.json"
    done = subprocess.run([str(mribench), "schema", "--out", str(out)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == (ROOT / "suites" / "suite.schema.json").read_text()
    printed = subprocess.run([str(mribench), "schema"], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)
    assert json.loads(printed.stdout)["properties"]["training"]["$ref"] == "#/$defs/TrainingConfig"
    refused = subprocess.run([str(mribench), "schema", "--out", str(tmp_path / "no" / "x.json")],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert refused.returncode == 2 and "--out" in refused.stderr


def test_suite_examples_in_the_docs_are_valid(validator):
    """A YAML block in the docs that starts with the schema line is a whole suite: it must be
    one, by the schema and by the loader."""
    blocks = [b for page in (ROOT / "docs").rglob("*.md")
              for b in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)
              if b.startswith(SCHEMA_LINE)]
    assert blocks, "docs/writing-a-suite.md shows a whole suite"
    for block in blocks:
        data = strict_yaml.load(block)
        assert _problems(validator, data) == []
        parse_suite(data)


def test_readme_fits_a_screen_has_the_two_commands_and_links_that_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_README_LINES
    assert "mlflow run . -e suite -P suite=four_class" in text
    assert "bash .ci/run" in text
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local and [link for link in local if not (ROOT / link).exists()] == []


@pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None,
                    reason="mkdocs is not installed (pip install -e '.[docs]')")
def test_the_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "suite" / "index.html").is_file()

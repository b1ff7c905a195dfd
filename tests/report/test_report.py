"""The report: published numbers beside ours, and the HTML page built from runs created through
the real tracking code (a tiny real suite), opened in headless Chromium."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from mribench.config.schema import SuiteError
from mribench.config.suite_file import load_suite, parse_suite
from mribench.report.summary import published_by_config, report

SUITE = {
    "name": "r", "datasets": [{"name": "brain-mri-binary-253"}],
    "models": [{"name": "test_resnet", "label": "paper_cnn"}, {"name": "test_efficientnet"}],
    "strategies": [{"name": "frozen", "label": "tf1"}, "full"],
    "split": {"protocol": "holdout"},
    "published": [{"model": "paper_cnn", "strategy": "tf1", "protocol": "holdout",
                   "values": {"test_accuracy": 0.9}}],
    "deviations": [],
}
TINY = {"training.epochs": 1, "seeds": [0, 1], "explain.methods": ["gradcam"],
        "explain.faithfulness": False,
        "experiment": "report-test", "preprocess.image_size": 32, "datasets.0.subset_per_class": 5}


def test_published_numbers_join_the_matching_configuration():
    assert published_by_config(parse_suite(SUITE)) == {("paper_cnn", "tf1"): {"test_accuracy": 0.9}}


def test_published_entry_must_name_a_declared_cell():
    bad = {**SUITE, "published": [{"model": "vgg", "strategy": "tf1", "protocol": "holdout",
                                   "values": {"test_accuracy": 0.9}}]}
    with pytest.raises(SuiteError, match="published\\[0\\]"):
        parse_suite(bad)


class Page(HTMLParser):
    """The page's image sources, external references and its first table (as rows of text)."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.tables, self._cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("href", "src"):
            if key in attrs and tag != "img":
                self.links.append(attrs[key])
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_dir):
    """4 real cells (2 tiny models x 2 seeds) into a fresh store, then the report."""
    from mribench.run.suite import SuiteOptions, run_suite

    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        mp.setenv("BENCHMARK_CACHE_DIR", str(tmp / "cache"))
        suite = load_suite("smoke", TINY)
        assert run_suite(suite, SuiteOptions(device="cpu", data_dir=str(data_dir))) == 0
        path = tmp / "tiny.yaml"
        path.write_text(json.dumps(suite.model_dump(mode="json")))
        assert report(str(path), None, as_json=False, compare=True, out=str(tmp / "out")) == 0
        client = MlflowClient()
        exp = client.get_experiment_by_name("report-test")
        runs = client.search_runs([exp.experiment_id], "tags.role = 'cell'")
        parent = client.search_runs([exp.experiment_id], "tags.role = 'suite'")[0]
        logged = {f.path for f in client.list_artifacts(parent.info.run_id, "report")}
    return {"out": tmp / "out", "runs": runs, "logged": logged}


def test_report_folder_has_page_markdown_figures_and_data(built, capsys):
    out = built["out"]
    for name in ("index.html", "report.md", "configurations.csv", "pairwise.csv", "runs.csv",
                 "forest.png", "pairwise.png", "cost.png", "leakage.png", "recall.png",
                 "confusion.png"):
        assert (out / name).is_file(), name
    assert {"report/index.html", "report/report.md", "report/forest.png"} <= built["logged"]
    md = (out / "report.md").read_text()
    for target in re.findall(r"\]\(([^)]+)\)", md):  # every figure and CSV it links is there
        assert (out / target).is_file(), target
    # the Grad-CAM maps of both models side by side: one grid from their per-image maps.npz
    assert "maps_gradcam.png" in md or "explain_" in md


def test_page_table_equals_the_runs_metrics(built):
    page = Page()
    page.feed((built["out"] / "index.html").read_text())
    header, *rows = page.tables[0]
    table = {r[0]: dict(zip(header, r)) for r in rows}
    by_config: dict[str, list] = {}
    for run in built["runs"]:
        by_config.setdefault(f"{run.data.tags['model']}/{run.data.tags['strategy']}", []).append(run)
    assert set(table) == set(by_config)
    for name, runs in by_config.items():
        row = table[name]

        def mean(key, runs=runs):
            return sum(r.data.metrics[key] for r in runs) / len(runs)
        assert row["n"] == str(len(runs))
        for column, key in (("clean acc [95% CI]", "test_clean_accuracy"),
                            ("full acc [95% CI]", "test_accuracy")):
            shown, low, high = map(float, re.findall(r"-?\d+\.\d+", row[column]))
            assert shown == pytest.approx(mean(key), abs=5e-4) and low <= shown <= high
        for column, key in (("MCC", "test_clean_mcc"), ("ECE", "test_clean_ece"),
                            ("kappa", "test_clean_kappa"), ("F1 (clean)", "test_clean_f1_macro")):
            assert float(row[column]) == pytest.approx(mean(key), abs=5e-4), column
        trainable = {r.data.params["params_trainable"] for r in runs}
        assert row["trainable"].replace(",", "") in trainable


def _section(page_html: str, title: str) -> str:
    """The HTML between the h2 that starts with `title` and the next h2."""
    part = page_html.split(f"<h2>{title}", 1)
    assert len(part) == 2, f"no section {title!r}"
    return part[1].split("<h2>", 1)[0]


def test_page_shows_calibration_reliability_and_risk_coverage(built, capsys):
    html_text = (built["out"] / "index.html").read_text()
    table = Page()
    table.feed(_section(html_text, "Calibration and selective prediction (clean test)"))
    header, *rows = table.tables[0]
    shown = {r[0]: dict(zip(header, r)) for r in rows}
    by_config: dict[str, list] = {}
    for run in built["runs"]:
        by_config.setdefault(f"{run.data.tags['model']}/{run.data.tags['strategy']}", []).append(run)
    assert set(shown) == set(by_config)
    for name, runs in by_config.items():
        def mean(key, runs=runs):
            return sum(r.data.metrics[key] for r in runs) / len(runs)
        before, after = map(float, shown[name]["ECE raw -> calibrated"].split(" -> "))
        assert before == pytest.approx(mean("test_clean_ece"), abs=5e-4)
        assert after == pytest.approx(mean("test_clean_calibrated_ece"), abs=5e-4)
        assert float(shown[name]["T"]) == pytest.approx(mean("temperature"), rel=1e-2)
        # the seed-aware point estimate is the runs' mean of what each cell logged
        aurc, low, high = map(float, re.findall(r"\d+\.\d+", shown[name]["AURC [95% CI]"]))
        assert aurc == pytest.approx(mean("test_clean_aurc"), abs=5e-4) and low <= aurc <= high
        acc = float(shown[name]["acc @ 90% coverage"].split()[0])
        assert acc == pytest.approx(mean("test_clean_accuracy_at_coverage_90"), abs=5e-4)
    for title in ("Risk against coverage", "Reliability before and after calibration"):
        images = Page()
        images.feed(_section(html_text, title))
        (src,) = images.images
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    for name in ("calibration.csv", "risk_coverage.csv", "reliability.csv",
                 "risk_coverage.png", "reliability_before_after.png"):
        assert (built["out"] / name).is_file(), name
    # and in --json
    tmp = built["out"].parent
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        capsys.readouterr()
        assert report(str(tmp / "tiny.yaml"), None, as_json=True, write_files=False) == 0
    cal = json.loads(capsys.readouterr().out)["calibration"]
    assert {r["config"] for r in cal["table"]} == set(by_config)
    assert len(cal["risk_coverage"]) == 20 * len(by_config)
    assert all(r["ci95"][0] <= r["risk"] <= r["ci95"][1] for r in cal["risk_coverage"])


def test_page_is_self_contained_and_every_image_decodes(built):
    page = Page()
    page.feed((built["out"] / "index.html").read_text())
    assert len(page.images) >= 8 and not page.links  # no script, stylesheet or link to fetch
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()


@pytest.mark.services
def test_page_loads_in_headless_chromium_with_no_broken_image(built, tmp_path):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium found (Debian: apt-get install chromium; .ci/run installs it)")
    # a copy of the page with a probe that counts images the browser could not decode
    probe = ("<script>window.addEventListener('load',function(){var i=[].slice.call("
             "document.images);document.body.setAttribute('data-probe','images='+i.length+"
             "' broken='+i.filter(function(x){return !x.complete||x.naturalWidth===0}).length)"
             "})</script></body>")
    page = tmp_path / "probe.html"
    page.write_text((built["out"] / "index.html").read_text().replace("</body>", probe))
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'data-probe="images=(\d+) broken=(\d+)"', done.stdout)
    assert found, done.stderr[-2000:]
    assert int(found.group(1)) >= 8 and found.group(2) == "0"


def test_page_shows_each_subsets_mix_baselines_and_groups(built):
    page = Page()
    page.feed((built["out"] / "index.html").read_text())
    header, *rows = page.tables[0]
    for row in rows:
        cells = dict(zip(header, row))
        assert re.fullmatch(r"\d+ in \d+ groups", cells["clean images"])
        assert re.fullmatch(r"0\.250 / 0\.250", cells["clean majority / chance"])  # 5 per class
        assert re.fullmatch(r"(\w+ (\d\.\d{3}|n/a)(, )?){4}", cells["clean recall"])
        assert float(cells["clean bal acc"]) >= 0
    mix = pd.read_csv(built["out"] / "composition.csv")
    assert set(mix["subset"]) == {"clean", "full"}
    assert (mix[["n glioma", "n meningioma", "n notumor", "n pituitary"]] == 5).all().all()
    assert (mix["groups"] <= mix["images"]).all()
    assert "What each test subset holds" in (built["out"] / "index.html").read_text()


FIT_PROBE = ("<script>window.addEventListener('load',function(){var d=document.documentElement;"
             "var cut=[].slice.call(document.querySelectorAll('.wide')).filter(function(w){"
             "return w.scrollWidth>w.clientWidth+1}).length;document.body.setAttribute("
             "'data-fit','page='+d.scrollWidth+' view='+window.innerWidth+' cut='+cut)})"
             "</script></body>")


def _fits_1280(page_html: str, tmp_path) -> tuple[int, int, int]:
    """(page width, window width, tables cut) of the page in headless Chromium at 1280 px."""
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium found (Debian: apt-get install chromium; .ci/run installs it)")
    page = tmp_path / "fit.html"
    page.write_text(page_html.replace("</body>", FIT_PROBE))
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--window-size=1280,900",
                           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'data-fit="page=(\d+) view=(\d+) cut=(\d+)"', done.stdout)
    assert found, done.stderr[-2000:]
    return int(found.group(1)), int(found.group(2)), int(found.group(3))


@pytest.mark.services
def test_a_wide_pairwise_table_fits_a_1280_px_window(tmp_path):
    """The pairwise table's widest real shape (long configuration names, every column; it once
    cut off p_holm and the detectable difference) wraps inside the page instead."""
    from mribench.report.html import Section, render_html

    row = {"subset": "clean", "a": "efficientnet_lite0 / partial2 / train_per_class=all",
           "b": "vit_small_patch14_dinov2 / linear_probe / train_per_class=all",
           "test": "seed-aware paired t-test on per-seed accuracy differences",
           "covers": "test images and seeds", "repeats": 3, "images": 816,
           "accuracy_a": 0.9583, "accuracy_b": 0.9041, "difference": 0.0542,
           "ci95": "[0.0312, 0.0771]", "p_value": 0.00086, "p_holm": 0.0043, "detectable": 0.021}
    sections = [Section("Pairwise tests", ["every pair"], table=[row] * 6)]
    page, view, cut = _fits_1280(render_html(tmp_path, "wide", ["meta"], sections), tmp_path)
    assert page <= view and cut == 0


@pytest.mark.services
def test_the_report_page_has_no_horizontal_overflow_at_1280_px(built, tmp_path):
    page, view, cut = _fits_1280((built["out"] / "index.html").read_text(), tmp_path)
    assert page <= view and cut == 0

"""A study's report carries the whole comparison: ours beside every published figure, the
deviations and the flagged published values, on the console and in the HTML and Markdown."""
from __future__ import annotations

import yaml

from mribench.cli.main import main
from mribench.config.schema import SUITES_DIR


def test_a_study_report_shows_published_figures_beside_ours_and_the_deviations(
        tmp_path, mlflow_store, smoke_data_dir, monkeypatch, capsys):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    data = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    data.update(name="mini_study", experiment="mini-study", models=[{"name": "test_resnet"}],
                explain={"methods": []}, seeds=[0, 1])
    data["training"]["epochs"] = 1
    data["published"] = [{"model": "test_resnet", "strategy": "scratch", "protocol": "official",
                          "source": "Table 9", "values": {
                              "test_accuracy": 0.9, "test_kappa": 0.85,
                              # inconsistent: the harmonic mean of 0.98 and 0.84 is 0.905
                              "test_precision_glioma": 0.98, "test_recall_glioma": 0.84,
                              "test_f1_glioma": 0.86}}]
    data["deviations"] = [{"topic": "epochs", "paper": "fifty epochs of training",
                           "ours": "one epoch, on a tiny subset", "why": "a pipeline check"}]
    suite = tmp_path / "mini_study.yaml"
    suite.write_text(yaml.safe_dump(data))
    assert main(["suite", str(suite), "--data-dir", str(smoke_data_dir)]) == 0
    capsys.readouterr()
    out = tmp_path / "report"
    assert main(["report", str(suite), "--out", str(out)]) == 0
    console = capsys.readouterr().out
    assert "test_kappa (ours / paper)" in console and "0.850" in console
    for page in (out / "index.html", out / "report.md"):
        text = page.read_text()
        assert "Deviations from the paper" in text and "fifty epochs of training" in text
        assert "Published values flagged" in text and "test_f1_glioma" in text
        assert "test_kappa (ours / paper)" in text  # a non-accuracy figure beside ours
    # a third seed that never ran: the configuration says its n is short
    data["seeds"] = [0, 1, 2]
    suite.write_text(yaml.safe_dump(data))
    assert main(["report", str(suite), "--no-files"]) == 0
    assert "1 of 3 cells not finished" in capsys.readouterr().out
    # another version of the suite (every run_key changes): the empty table says why
    data["training"]["epochs"] = 3
    suite.write_text(yaml.safe_dump(data))
    assert main(["report", str(suite), "--no-files"]) == 2
    assert "its 2 finished run(s) belong to other versions" in capsys.readouterr().err

"""Models that outlive the run: a cell's logged model loads in a fresh process and repeats the
cell's own test predictions; `predict`, `evaluate` and `report --register` work from the
installed console script, outside the repository; `mlflow models serve` answers a request."""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from mribench.data.registry import SAMPLE_DIR

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def mribench(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([shutil.which("mribench"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    """One finished cell (tiny ResNet, 2 epochs, 48 px) on the embedded sample."""
    tmp = tmp_path_factory.mktemp("models-use")
    suite = {"name": "use", "experiment": "use", "datasets": [{"name": "brain-tumor-mri-7023-sample"}],
             "split": {"protocol": "official", "val_fraction": 0.25},
             "preprocess": {"image_size": 48}, "training": {"epochs": 2, "batch_size": 8},
             "models": [{"name": "test_resnet"}], "strategies": ["scratch"], "seeds": [0]}
    (tmp / "use.yaml").write_text(yaml.safe_dump(suite))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "BENCHMARK_CACHE_DIR": str(tmp / "cache"), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    mribench(["suite", "use.yaml"], env, tmp)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("use")
    run = client.search_runs([exp.experiment_id], "tags.role = 'cell'")[0]
    return tmp, env, run


def test_the_logged_model_repeats_the_cells_test_predictions_in_a_fresh_process(cell):
    tmp, env, run = cell
    assert run.data.metrics["model_size_mb"] > 0
    assert not list((tmp / "cache" / "checkpoints").glob("*/last.pt"))  # removed once finished
    code = f"""
import json, sys, mlflow, pandas as pd
model = mlflow.pyfunc.load_model("runs:/{run.info.run_id}/model")
files = json.loads(sys.argv[1])
out = model.predict(pd.DataFrame({{"path": files}}))
print(out.to_json(orient="records"))
"""
    logged = pd.read_csv(MlflowClient(env["MLFLOW_TRACKING_URI"]).download_artifacts(
        run.info.run_id, "metrics/predictions.csv", str(tmp)))
    files = [str(SAMPLE_DIR / f) for f in logged["file"]]
    done = subprocess.run([sys.executable, "-c", code, json.dumps(files)], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ours = pd.DataFrame(json.loads(done.stdout.strip().splitlines()[-1]))
    assert list(ours["predicted"]) == list(logged["pred"])
    # calibrated by default (the cell's temperature travels with the model)
    for c in CLASSES:
        assert (ours[f"prob_{c}"] - logged[f"calibrated_prob_{c}"]).abs().max() < 1e-6
    assert run.data.metrics["temperature"] != pytest.approx(1.0)
    raw = subprocess.run([sys.executable, "-c", code.replace(
        '"path": files}))', '"path": files}), params={"raw_probabilities": True})'),
        json.dumps(files)], env=env, cwd=tmp, capture_output=True, text=True, timeout=300)
    assert raw.returncode == 0, raw.stderr[-3000:]
    raw = pd.DataFrame(json.loads(raw.stdout.strip().splitlines()[-1]))
    for c in CLASSES:
        assert (raw[f"prob_{c}"] - logged[f"prob_{c}"]).abs().max() < 1e-6


def test_predict_reads_folders_and_manifests_and_report_registers_the_champion(cell):
    tmp, env, run = cell
    folder = SAMPLE_DIR / "Testing" / "glioma"
    (tmp / "few.csv").write_text("path,label\n" + "".join(
        f"{p},pituitary\n" for p in sorted((SAMPLE_DIR / "Testing" / "pituitary").iterdir())[:2]))
    direct = json.loads(mribench(["predict", run.info.run_id, str(folder), "few.csv", "--json"],
                                 env, tmp).stdout)
    assert len(direct["rows"]) == 8 + 2
    assert [r["label"] for r in direct["rows"][-2:]] == ["pituitary", "pituitary"]
    assert all(abs(sum(r[f"prob_{c}"] for c in CLASSES) - 1) < 1e-9 for r in direct["rows"])

    done = mribench(["report", "use.yaml", "--register", "use-best", "--no-files"], env, tmp)
    assert "models:/use-best@champion" in done.stderr
    version = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_model_version_by_alias("use-best",
                                                                                  "champion")
    assert version.run_id == run.info.run_id and "test_clean_accuracy" in version.description
    champion = json.loads(mribench(["predict", "models:/use-best@champion", str(folder),
                                    "few.csv", "--json"], env, tmp).stdout)
    assert champion["rows"] == direct["rows"]

    bad = subprocess.run([shutil.which("mribench"), "predict", run.info.run_id, "nowhere.png"],
                         cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "nowhere.png: no such file or folder" in bad.stderr


def test_predict_abstain_below_refers_the_images_under_the_threshold(cell):
    """A hand-built case: eight test images whose calibrated highest probabilities are known
    from the cell's own predictions; a threshold between the 3rd and 4th lowest refers the
    three least confident, from the console script outside the repository."""
    tmp, env, run = cell
    logged = pd.read_csv(MlflowClient(env["MLFLOW_TRACKING_URI"]).download_artifacts(
        run.info.run_id, "metrics/predictions.csv", str(tmp)))
    cal = logged[[f"calibrated_prob_{c}" for c in CLASSES]].max(axis=1)
    pick = logged.assign(top=cal).drop_duplicates("top").sort_values("top").head(8)
    threshold = float((pick["top"].iloc[2] + pick["top"].iloc[3]) / 2)
    expected = {str(SAMPLE_DIR / f) for f in pick["file"].iloc[:3]}
    paths = [str(SAMPLE_DIR / f) for f in pick["file"]]
    done = mribench(["predict", run.info.run_id, *paths, "--abstain-below", f"{threshold:.12f}",
                     "--json"], env, tmp)
    out = json.loads(done.stdout)
    assert {r["path"] for r in out["rows"] if r["refer"]} == expected
    assert out["referred"] == 3 and out["decided"] == 5 and out["probabilities"] == "calibrated"
    assert "3 of 8 image(s) referred" in done.stderr
    # raw probabilities: the network's softmax, as in the cell's prob_ columns
    raw = json.loads(mribench(["predict", run.info.run_id, *paths, "--raw-probabilities",
                               "--json"], env, tmp).stdout)
    want = pick.set_index(pick["file"].map(lambda f: str(SAMPLE_DIR / f)))
    assert raw["probabilities"] == "raw"
    assert all(abs(r[f"prob_{c}"] - want.loc[r["path"], f"prob_{c}"]) < 1e-6
               for r in raw["rows"] for c in CLASSES)
    bad = subprocess.run([shutil.which("mribench"), "predict", run.info.run_id, paths[0],
                          "--abstain-below", "1.5"], cwd=tmp, env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "--abstain-below: a probability in (0, 1]" in bad.stderr


def test_evaluate_on_another_set_audits_copies_of_training_images(cell):
    tmp, env, run = cell
    # two training images per class copied in (exact duplicates), plus two test images each
    root = tmp / "hospital"
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for p in sorted((SAMPLE_DIR / "Training" / c).iterdir())[:2]:
            shutil.copy(p, root / c / f"copy-{p.name}")
        for p in sorted((SAMPLE_DIR / "Testing" / c).iterdir())[:2]:
            shutil.copy(p, root / c / p.name)
    done = json.loads(mribench(["evaluate", run.info.run_id, "--root", str(root), "--name",
                                "hospital", "--json"], env, tmp).stdout)
    # copies of validation images count too: the audit compares with train and val
    assert done["n_exact_duplicates"] == 8
    whole, clean = done["rows"]
    assert whole["n"] == 16 and clean["n"] == 16 - 8 - done["n_near_duplicates"]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    child = client.get_run(done["evaluation_run_id"])
    assert child.data.tags["mlflow.parentRunId"] == run.info.run_id
    assert child.data.metrics["external_hospital_n_exact_duplicates"] == 8
    # scored raw and with the model's temperature, and ranked for selective prediction
    assert {"external_hospital_ece", "external_hospital_calibrated_ece",
            "external_hospital_aurc", "external_clean_hospital_accuracy_at_coverage_90"} <= \
        set(child.data.metrics)
    preds = pd.read_csv(client.download_artifacts(child.info.run_id,
                                                  "external/hospital/predictions.csv", str(tmp)))
    assert set(preds.loc[preds["file"].str.contains("copy-"), "duplicate"]) == {"exact"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.services
def test_a_served_model_answers_with_the_probabilities_of_a_posted_image(cell):
    tmp, env, run = cell
    port = _free_port()
    server = subprocess.Popen([shutil.which("mlflow"), "models", "serve", "-m",
                               f"runs:/{run.info.run_id}/model", "--env-manager", "local", "-h",
                               "127.0.0.1", "-p", str(port)], cwd=tmp, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        image = sorted((SAMPLE_DIR / "Testing" / "glioma").iterdir())[0]
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [
            [base64.b64encode(image.read_bytes()).decode()]]}}).encode()
        deadline = time.monotonic() + 120
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body,
                                                 {"Content-Type": "application/json"})
                answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(1)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    logged = pd.read_csv(MlflowClient(env["MLFLOW_TRACKING_URI"]).download_artifacts(
        run.info.run_id, "metrics/predictions.csv", str(tmp)))
    row = logged[logged["file"] == f"Testing/glioma/{image.name}"].iloc[0]
    (served,) = answer["predictions"]
    assert served["predicted"] == row["pred"]
    assert all(abs(served[f"prob_{c}"] - row[f"calibrated_prob_{c}"]) < 1e-6 for c in CLASSES)

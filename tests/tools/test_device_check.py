"""The device check (tools/device_check.sh): its wheel list covers what the package imports and
duplicates nothing the GPU image has, and its CPU rehearsal on the shipped sample runs every
step and writes the summary."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import build_device_pack as pack  # noqa: E402

OPTIONAL = {"ray", "kaggle"}  # extras: --executor ray, `data fetch` from Kaggle


def imported_modules() -> set[str]:
    """Top-level modules the package imports anywhere (at start or inside functions)."""
    mods = set()
    for f in (ROOT / "benchmark" / "mribench").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return mods - set(sys.stdlib_module_names) - {"mribench"} - OPTIONAL


def test_wheels_cover_every_import_and_duplicate_nothing_on_the_image():
    carried = pack.closure()
    assert not set(carried) & pack.IMAGE_PACKAGES, "the GPU image has these already"
    assert not set(carried) & set(pack.LEFT_OUT)
    dists = metadata.packages_distributions()
    missing = {}
    for module in sorted(imported_modules()):
        names = {pack.norm(d) for d in dists.get(module, [])}
        # a module is served if one distribution providing it is carried or on the image
        if not names & (set(carried) | pack.IMAGE_PACKAGES):
            missing[module] = sorted(names)
    assert not missing, f"imported at run time but neither carried nor on the image: {missing}"
    # what TorchIO needs at import and the image lacks is carried, SimpleITK excepted (shimmed)
    assert {"torchio", "nibabel", "mlflow-skinny", "sqlalchemy", "alembic"} <= set(carried)
    assert (ROOT / "tools" / "device_shims" / "SimpleITK" / "__init__.py").is_file()


def test_cpu_rehearsal_runs_every_step_and_writes_the_summary(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "DEVICE_CHECK_WORK": str(tmp_path / "work"),
           # the GPU image has no SimpleITK: rehearse with the shim it gets there
           "DEVICE_CHECK_SHIM": "1",
           # every step must work; a busy CI machine must not fail it on time alone
           "DEVICE_CHECK_BUDGET": "1500"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(["bash", str(ROOT / "tools" / "device_check.sh"), "--device", "cpu",
                           "--quick", "--out", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1600)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    summary = json.loads((out / "device_check.json").read_text())
    steps = {s["step"]: s["status"] for s in summary["steps"]}
    assert steps == {"weights": "ok", "cuda-tests": "ok", "perf-test_resnet": "ok",
                     "suite": "ok", "predict": "ok"}
    assert summary["simpleitk"].startswith("shim")
    assert summary["environment"]["device"] == "cpu" and summary["environment"]["device_name"]
    perf = summary["perf"]["test_resnet"]
    assert perf["ratios"]["fast path vs fp32 (pipeline)"]["median"] > 0
    cells = {c["strategy"]: c for c in summary["suite"]["cells"]}
    assert set(cells) == {"full", "frozen", "knn", "linear_probe"}
    assert all(c["status"] == "FINISHED" and c["torch_threads"] for c in cells.values())
    assert cells["full"]["gradcam_metrics"] and cells["full"]["robustness_metrics"]
    assert cells["frozen"]["training_path"] == "feature_reuse"
    assert summary["predict"] == "3 images classified"
    md = (out / "device_check.md").read_text()
    assert md.startswith("# Device check: CPU") and "| suite | ok |" in md

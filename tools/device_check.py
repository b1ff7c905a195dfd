"""The device check: every CUDA path of the pipeline, measured and exercised in one call of at
most ten minutes, with one JSON + Markdown summary naming the device.

Run through tools/device_check.sh (which installs the carried wheels first); the exact device
call is in docs/speed.md. Steps, each a subprocess with its own timeout inside the total budget:

1. env: Python, torch, the device and its memory, nvidia-smi;
2. weights: seeded random-init weight files for the models used (the device has no network and
   the pack carries no ImageNet weights: every figure here is speed or a CUDA-path check, never
   an accuracy to compare with a study);
3. cuda-tests: the tests that need a CUDA device (they skip on CPU);
4. perf: `mribench perf` fp32 vs the fast path, ResNet50 and EfficientNet-Lite0 at 224 px, at
   batch sizes that fill the card;
5. suite: a short real suite on the data pack: full, frozen with feature reuse, knn, linear
   probe; Grad-CAM, one robustness pass (noise), a logged model per cell; ResNet18 full on the
   3264 pack gives seconds per epoch, extrapolated to the whole 3264 set for Study B's 11.59 s;
6. predict: `mribench predict` with a logged model on pack images.

`--device cpu --quick` is the rehearsal a test runs on the shipped sample (tiny model, 32 px).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHIMS = ROOT / "tools" / "device_shims"
STUDY_B_RESNET18_EPOCH_S = 11.59  # Study B's ResNet18 full fine-tuning, seconds per epoch
SET_3264_TRAIN = 2870  # Training images of the whole 3264 set


def plan(device: str, quick: bool) -> dict:
    """Models, sizes and data of the run: the GPU plan, or the CPU rehearsal's tiny one."""
    if quick:
        return {"perf": [("test_resnet", 32, 8, 2, 1)], "suite_model": "test_resnet",
                "image_size": 32, "batch_size": 8, "epochs": 1,
                "datasets": ["brain-tumor-mri-7023-sample"], "severity": 1}
    # (model, image size, batch, images per class, passes over them per measurement)
    return {"perf": [("resnet50", 224, 256, 100, 8), ("efficientnet_lite0", 224, 256, 100, 8)],
            "suite_model": "resnet18", "image_size": 224, "batch_size": 64, "epochs": 2,
            "datasets": ["brain-tumor-mri-7023", "brain-tumor-classification-3264"],
            "severity": 3}


def suite_yaml(p: dict) -> dict:
    return {
        "name": "device_check", "experiment": "device-check",
        "description": "CUDA paths of every strategy family on the device check's data pack",
        "datasets": [{"name": d} for d in p["datasets"]],
        "split": {"protocol": "official", "val_fraction": 0.2},
        "preprocess": {"image_size": p["image_size"]},
        "training": {"epochs": p["epochs"], "batch_size": p["batch_size"], "lr": 0.001},
        "models": [{"name": p["suite_model"]}],
        "strategies": ["full", "frozen", "knn", "linear_probe"],
        "seeds": [0],
        # a stride-named layer: resolving it probes the model on its device (models/layers.py)
        "explain": {"methods": ["gradcam"], "per_class": 1, "gradcam_layer": "stride:16"},
        "robustness": {"artefacts": ["noise"], "severities": [p["severity"]]},
        "artifacts": {"model": "best"},
    }


class Steps:
    """Runs the steps within the total budget; keeps each one's outcome and output tail."""

    def __init__(self, work: Path, env: dict, budget_s: float, per_step: bool = True,
                 on_step=None):
        self.work, self.env, self.deadline = work, env, time.monotonic() + budget_s
        self.on_step = on_step or (lambda: None)
        self.per_step = per_step  # False: only the total budget (a CPU rehearsal on a busy box)
        self.results: list[dict] = []

    def run(self, name: str, cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess | None:
        left = self.deadline - time.monotonic()
        limit = min(timeout_s, left) if self.per_step else left
        row = {"step": name, "command": " ".join(cmd[1:] if cmd[0] == sys.executable else cmd),
               "timeout_s": round(limit)}
        if limit < 5:
            self.results.append(row | {"status": "skipped: out of time", "seconds": 0})
            return None
        start = time.monotonic()
        try:
            done = subprocess.run(cmd, cwd=self.work, env=self.env, capture_output=True,
                                  text=True, timeout=limit)
            status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
            err = done.stderr
        except subprocess.TimeoutExpired as exc:
            done, status = None, f"timed out after {limit:.0f} s"
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else \
                (exc.stderr or "")
        row |= {"status": status, "seconds": round(time.monotonic() - start, 1)}
        (self.work / f"{name}.log").write_text(err + ("" if done is None else done.stdout))
        if status != "ok":
            row["stderr_tail"] = err[-1500:]
        self.results.append(row)
        print(f"[{row['seconds']:6.1f} s] {name}: {status}", file=sys.stderr, flush=True)
        self.on_step()
        return done if done is not None and done.returncode == 0 else None


def environment(device: str) -> dict:
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "device": device,
           "cuda_available": torch.cuda.is_available(),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(device)
        out |= {"device_name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1),
                "multiprocessors": props.multi_processor_count,
                "bf16": torch.cuda.is_bf16_supported()}
    else:
        out["device_name"] = f"CPU ({platform.processor() or platform.machine()})"
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        out["nvidia_smi"] = smi.stdout.strip()
    return out


def requirement_mismatches(site: str) -> list[str]:
    """Requirements of the wheels installed into `site` that the machine's packages (the image's
    own, or the other carried ones) do not meet: what to suspect first when a step fails."""
    from importlib import metadata

    from packaging.requirements import Requirement

    out = []
    for dist in metadata.distributions(path=[site]):
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                out.append(f"{dist.metadata['Name']} needs {req}: not installed")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                out.append(f"{dist.metadata['Name']} needs {req}: {have} installed")
    return sorted(out)


def write_weights(models: list[str], folder: Path) -> None:
    """Seeded random-init weights under each model's file name in $BENCHMARK_WEIGHTS_DIR."""
    import torch

    from mribench.models import registry
    from mribench.models.archs import create_network
    from mribench.models.weights import file_stem

    folder.mkdir(parents=True, exist_ok=True)
    for name in models:
        spec = registry.get(name)
        torch.manual_seed(0)
        torch.save(create_network(spec).state_dict(), folder / f"{file_stem(spec)}.pth")


def perf_summary(out: dict) -> dict:
    ratios = {r["ratio"]: {k: r[k] for k in ("median", "min", "max")} for r in out["rows"]}
    speed = {m["measurement"]: m["images_per_s"] for m in out["measurements"]}
    return {"fast_precision": out["fast_precision"], "batch_size": out["batch_size"],
            "image_size": out["image_size"], "images_per_measurement": out["images"],
            "ratios": ratios, "images_per_s": speed}


def suite_summary(store: str, p: dict) -> dict:
    """Per cell run in the store (a suite stopped by its timeout still reports the cells it
    finished): status, seconds, test accuracy, seconds per epoch; the Study B extrapolation."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    exp = client.get_experiment_by_name("device-check")
    runs = client.search_runs([exp.experiment_id], "tags.role = 'cell'",
                              order_by=["attributes.start_time ASC"]) if exp else []
    cells = []
    for run in runs:
        m, params, tags = run.data.metrics, run.data.params, run.data.tags
        end = run.info.end_time or run.info.start_time
        cells.append({
            "dataset": tags.get("dataset"), "model": tags.get("model"),
            "strategy": tags.get("strategy"), "status": run.info.status,
            "seconds": round((end - run.info.start_time) / 1000, 1),
            "test_accuracy": m.get("test_accuracy"),
            "seconds_per_epoch": m.get("seconds_per_epoch"),
            "n_train": int(params["n_train"]) if "n_train" in params else None,
            "torch_threads": params.get("torch_threads"),
            "precision": params.get("precision_resolved"),
            "training_path": tags.get("training_path"),
            "robustness_metrics": sorted(k for k in m if "noise" in k)[:3],
            "gradcam_metrics": sorted(k for k in m if k.startswith("gradcam"))[:3],
            "peak_memory": {k: v for k, v in m.items() if "peak" in k}})
    out = {"cells": cells}
    b = [c for c in cells if c["dataset"] == "brain-tumor-classification-3264"
         and c["strategy"] == "full" and c.get("seconds_per_epoch") and c.get("n_train")]
    if b and p["suite_model"] == "resnet18":
        per_epoch = b[0]["seconds_per_epoch"] * SET_3264_TRAIN * 0.8 / b[0]["n_train"]
        out["study_b_resnet18"] = {
            "pack_seconds_per_epoch": round(b[0]["seconds_per_epoch"], 3),
            "pack_train_images": b[0]["n_train"],
            "extrapolated_seconds_per_epoch_3264": round(per_epoch, 2),
            "study_b_seconds_per_epoch": STUDY_B_RESNET18_EPOCH_S,
            "speedup": round(STUDY_B_RESNET18_EPOCH_S / per_epoch, 1),
            "note": "train + validation time per epoch on the pack, scaled linearly to 80% of "
                    "the set's 2870 training images (val_fraction 0.2)"}
    return out


def markdown(summary: dict) -> str:
    env = summary["environment"]
    lines = [f"# Device check: {env.get('device_name')} ({summary['mode']})", "",
             f"{env['date']}, mribench {summary['version']}, torch {env['torch']}, Python "
             f"{env['python']}, {env['machine']}", "", "| step | status | seconds |",
             "|---|---|---|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in summary["steps"]]
    for name, perf in summary.get("perf", {}).items():
        lines += ["", f"## perf: {name} at {perf['image_size']} px, batch {perf['batch_size']}, "
                  f"fast path {perf['fast_precision']}", "", "| ratio | median | min | max |",
                  "|---|---|---|---|"]
        lines += [f"| {k} | {v['median']} | {v['min']} | {v['max']} |"
                  for k, v in perf["ratios"].items()]
        lines += ["", "images/s: " + ", ".join(f"{k} {v}" for k, v in perf["images_per_s"].items())]
    suite = summary.get("suite")
    if suite:
        lines += ["", "## suite on the data pack", "",
                  "| dataset | strategy | status | seconds | s/epoch | test acc | threads |",
                  "|---|---|---|---|---|---|---|"]
        for c in suite["cells"]:
            lines.append(f"| {c['dataset']} | {c['strategy']} | {c['status']} | "
                         f"{_f(c.get('seconds'))} | {_f(c.get('seconds_per_epoch'))} | "
                         f"{_f(c.get('test_accuracy'))} | {c.get('torch_threads')} |")
        if "study_b_resnet18" in suite:
            b = suite["study_b_resnet18"]
            lines += ["", f"ResNet18 full, 3264 set: {b['extrapolated_seconds_per_epoch_3264']} "
                      f"s/epoch extrapolated vs Study B's {b['study_b_seconds_per_epoch']} s: "
                      f"{b['speedup']}x ({b['note']})"]
    if summary.get("requirement_mismatches"):
        lines += ["", "carried wheels' requirements not met: "
                  + "; ".join(summary["requirement_mismatches"])]
    if summary.get("predict"):
        lines += ["", f"predict: {summary['predict']}"]
    lines += ["", "Weights are seeded random inits: speeds and CUDA paths, not accuracies."]
    return "\n".join(lines) + "\n"


def save(summary: dict, steps: Steps, out: Path, started: float) -> None:
    """Write the summary as it stands (after every step: a killed run still leaves one)."""
    summary["steps"] = steps.results
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    (out / "device_check.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "device_check.md").write_text(markdown(summary))


def _f(v) -> str:
    return "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the device check (see tools/device_check.sh)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="the CPU rehearsal's tiny plan")
    ap.add_argument("--data-dir", default=str(ROOT / ".device" / "data"))
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / ".device" / "out"))
    ap.add_argument("--budget", type=float, default=540, help="seconds for all steps")
    args = ap.parse_args(argv)
    started = time.monotonic()  # the budget counts from here, imports included
    out, p = Path(args.out), plan(args.device, args.quick)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("DEVICE_CHECK_WORK") or "/tmp/mribench-device-check")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if args.quick and not Path(args.data_dir).is_dir():
        # the rehearsal runs on the sample shipped in the package: no data pack needed (a fresh
        # clone has none), only a data folder that exists
        args.data_dir = str(work / "data")
        Path(args.data_dir).mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "BENCHMARK_CACHE_DIR": str(work / "cache"), "BENCHMARK_WEIGHTS_DIR": str(work / "weights"),
           "BENCHMARK_DATA_DIR": args.data_dir, "BENCHMARK_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    path = [str(ROOT / "benchmark"), env.get("PYTHONPATH", "")]
    shimmed = importlib.util.find_spec("SimpleITK") is None or bool(os.environ.get("DEVICE_CHECK_SHIM"))
    if shimmed:  # see tools/device_shims/SimpleITK
        path.insert(0, str(SHIMS))
    env["PYTHONPATH"] = os.pathsep.join(x for x in path if x)
    os.environ.update({k: env[k] for k in ("BENCHMARK_WEIGHTS_DIR", "MLFLOW_TRACKING_URI")})
    sys.path.insert(0, str(ROOT / "benchmark"))
    import mribench

    summary: dict = {"mode": f"{args.device}{', quick' if args.quick else ''}",
                     "version": mribench.__version__, "environment": environment(args.device),
                     "simpleitk": "shim (tools/device_shims)" if shimmed else "installed",
                     "requirement_mismatches": requirement_mismatches(
                         os.environ.get("DEVICE_CHECK_SITE", "/tmp/mribench-site")),
                     "perf": {}}
    # the GPU run keeps each step to its share of the ten minutes; the CPU rehearsal checks
    # that every step works, however busy the machine, within the total budget
    steps = Steps(work, env, args.budget - 10 - (time.monotonic() - started),
                  per_step=not args.quick, on_step=lambda: save(summary, steps, out, started))
    t0 = time.monotonic()
    write_weights(sorted({m for m, *_ in p["perf"]} | {p["suite_model"]}), work / "weights")
    steps.results.append({"step": "weights", "status": "ok", "command": "random-init files",
                          "seconds": round(time.monotonic() - t0, 1)})
    py = [sys.executable, "-m"]
    steps.run("cuda-tests", py + ["pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda",
                                  str(ROOT / "tests/train/test_fastpath.py"),
                                  str(ROOT / "tests/data/test_data_loader.py"),
                                  f"--junitxml={work / 'cuda-tests.xml'}"], 120)
    dataset = "brain-tumor-mri-7023-sample" if args.quick else "brain-tumor-mri-7023"
    for model, size, batch, per_class, passes in p["perf"]:
        done = steps.run(f"perf-{model}", py + [
            "mribench", "perf", "--device", args.device, "--model", model, "--dataset", dataset,
            "--data-dir", args.data_dir, "--image-size", str(size), "--batch-size", str(batch),
            "--per-class", str(per_class), "--passes", str(passes), "--repeats",
            "1" if args.quick else "3", "--json"], 150)
        if done:
            summary["perf"][model] = perf_summary(json.loads(done.stdout))
    suite_file = work / "device_check.yaml"
    suite_file.write_text(yaml.safe_dump(suite_yaml(p), sort_keys=False))
    steps.run("suite", py + ["mribench", "suite", str(suite_file), "--device", args.device,
                             "--data-dir", args.data_dir, "--json"], 300)
    summary["suite"] = suite_summary(env["MLFLOW_TRACKING_URI"], p)
    images = sorted((Path(args.data_dir) / ("sample" if args.quick else dataset) / "Testing")
                    .rglob("*.jpg"))[:3]
    if args.quick:  # the sample ships inside the package
        from mribench.data.registry import SAMPLE_DIR
        images = sorted((SAMPLE_DIR / "Testing").rglob("*.jpg"))[:3]
    done = steps.run("predict", py + ["mribench", "predict", "--suite", str(suite_file), "--model",
                                      p["suite_model"], "--strategy", "full", "--seed", "0",
                                      "--dataset", p["datasets"][0], "--device", args.device,
                                      "--json", *map(str, images)], 90)
    if done:
        summary["predict"] = f"{len(json.loads(done.stdout)['rows'])} images classified"
    save(summary, steps, out, started)
    for name in ("suite", "perf-resnet50"):  # the longest logs, for a failed step
        if (work / f"{name}.log").is_file():
            shutil.copy(work / f"{name}.log", out / f"{name}.log")
    print(markdown(summary))
    return 0 if all(s["status"] == "ok" for s in steps.results) else 1


if __name__ == "__main__":
    sys.exit(main())

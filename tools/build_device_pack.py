"""Prepare, on a machine with the package registries and the real data sets, everything the
device check (tools/device_check.sh) needs on a GPU machine that has no network.

    python tools/build_device_pack.py [--data-dir /work/shared/data] [--out .device]

writes into the ignored folder `.device/`:
- wheels/: the runtime packages the GPU image lacks, for CPython 3.12 manylinux x86-64, at the
  versions installed here (the image's own torch, torchvision, numpy, ... are used as they are);
- data/: a small pack of real images, the same folder layout as the full sets, so suites find
  them with `--data-dir .device/data`;
- manifest.json: what is in it, with sizes.

It then checks the size budget: the device tool copies the working tree and the carried
folders, 64 MiB in all.

Which packages: the closure of the project's runtime dependencies (pyproject.toml) over the
metadata installed here, minus the packages the GPU image has (IMAGE_PACKAGES, as listed for the
`cuda` image on 2026-11-17), minus two left out for size: `mlflow` (its UI and server; the
`mlflow` Python package itself is mlflow-skinny, and the SQLite store needs only SQLAlchemy and
Alembic, carried) and `simpleitk` (a 52 MB wheel that TorchIO imports at start; the device check
puts tools/device_shims first on the path instead, and its robustness pass uses an artefact that
does not resample: see the shim's docstring).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 64 * 2**20  # what the device tool carries: working tree + carried folders

# the GPU machines' `cuda` image (the device docs' KINDS.md, read there on 2026-11-17)
IMAGE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt
xarray xxhash yarl zipp
""".split())
# left out for size (see the module docstring); mlflow-skinny and the store's needs come instead
LEFT_OUT = {"mlflow": "UI and server (12 MB); mlflow-skinny is the `mlflow` package",
            "simpleitk": "52 MB; tools/device_shims stands in (no resampling artefacts)"}
INSTEAD = ["mlflow-skinny", "sqlalchemy", "alembic"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
# the data pack: (set, split folder, images per class)
PACK = [("brain-tumor-mri-7023", "Training", 100), ("brain-tumor-mri-7023", "Testing", 20),
        ("brain-tumor-classification-3264", "Training", 40),
        ("brain-tumor-classification-3264", "Testing", 10)]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements() -> list[str]:
    """The project's runtime dependencies (pyproject.toml [project].dependencies)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(data["project"]["dependencies"])


def closure() -> dict[str, str]:
    """{normalised name: version installed here} of every package the runtime dependencies
    need on Python 3.12 / Linux x86-64 that the GPU image lacks (LEFT_OUT excepted)."""
    env = default_environment() | {"python_version": "3.12", "python_full_version": "3.12.3",
                                   "sys_platform": "linux", "platform_machine": "x86_64",
                                   "platform_system": "Linux", "extra": ""}
    todo = [Requirement(r) for r in runtime_requirements()] + [Requirement(r) for r in INSTEAD]
    seen: dict[str, str] = {}
    while todo:
        req = todo.pop()
        name = norm(req.name)
        if name in seen or name in IMAGE_PACKAGES or name in LEFT_OUT:
            continue
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{req.name} is needed but not installed here: install the project "
                             "(pip install -e .) before building the pack") from None
        seen[name] = dist.version
        todo.extend(Requirement(r) for r in dist.requires or [])
    return dict(sorted(seen.items()))


def download(packages: dict[str, str], wheels: Path) -> None:
    """One pip call for every package (wheels where published, else the source archive), then
    the source archives built into wheels here: taken only when pure Python (grad-cam, lime,
    ttach), since the same file then serves CPython 3.12 there."""
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--prefer-binary",
           "--python-version", "3.12", "--implementation", "cp", "-q", "-d", str(wheels)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    subprocess.run(cmd + [f"{n}=={v}" for n, v in packages.items()], check=True)
    for sdist in [*wheels.glob("*.tar.gz"), *wheels.glob("*.zip")]:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(wheels), str(sdist)], check=True)
        sdist.unlink()
    built = {norm(w.name.split("-")[0]): w for w in wheels.glob("*.whl")}
    missing = sorted(set(packages) - set(built))
    if missing:
        raise SystemExit(f"no wheel for {missing}")
    impure = [w.name for w in built.values() if "-none-any" not in w.name
              and not re.search(r"-cp3(12|\d*-abi3)-", w.name)]
    if impure:
        raise SystemExit(f"wheels that would not run on CPython 3.12: {impure}")


def data_pack(source: Path, out: Path, seed: int = 0) -> int:
    """Copy `per class` real images of each split (a seeded draw), same layout; returns files."""
    n = 0
    for name, split, per_class in PACK:
        for cls in sorted(p for p in (source / name / split).iterdir() if p.is_dir()):
            files = sorted(p for p in cls.iterdir() if p.is_file())
            for f in random.Random(f"{seed}/{name}/{split}/{cls.name}").sample(
                    files, min(per_class, len(files))):
                target = out / name / split / cls.name / f.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)
                n += 1
    return n


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tree_size() -> int:
    """What the device tool copies besides the carried folders: tracked files and untracked
    ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout.decode()
    return sum((ROOT / p).stat().st_size for p in out.split("\0") if p and (ROOT / p).is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="/work/shared/data", help="where the real sets are")
    ap.add_argument("--out", default=str(ROOT / ".device"))
    ap.add_argument("--list", action="store_true", help="print the wheel list and exit")
    args = ap.parse_args(argv)
    packages = closure()
    if args.list:
        print(json.dumps(packages, indent=1))
        return 0
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    download(packages, out / "wheels")
    images = data_pack(Path(args.data_dir), out / "data")
    sizes = {"wheels": size(out / "wheels"), "data": size(out / "data"), "tree": tree_size()}
    manifest = {"packages": packages, "left_out": LEFT_OUT, "images": images,
                "pack": [list(p) for p in PACK], "bytes": sizes,
                "total_mib": round(sum(sizes.values()) / 2**20, 1)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(json.dumps({k: manifest[k] for k in ("images", "bytes", "total_mib")}, indent=1))
    if sum(sizes.values()) >= BUDGET:
        print(f"over the device tool's 64 MiB: {manifest['total_mib']} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

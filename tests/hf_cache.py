"""A pre-filled Hugging Face cache for tests: weight files where huggingface_hub looks for them
with the hub offline (no network in tests)."""
from __future__ import annotations

from pathlib import Path


def fill_hf_cache(cache: Path, repo: str, state: dict) -> Path:
    """huggingface_hub's own cache layout: models--org--name/snapshots/<rev>/ + refs/main; the
    state saved as that snapshot's model.safetensors, whose path is returned."""
    from safetensors.torch import save_file

    folder, rev = cache / f"models--{repo.replace('/', '--')}", "a" * 40
    (folder / "snapshots" / rev).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(rev)
    path = folder / "snapshots" / rev / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path

"""The public brain MRI datasets the studies used: layout, canonical labels, counts, provenance."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mribench.registry import Registry


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str  # folder name under the data directory
    class_map: dict[str, str]  # publisher's class-folder name -> canonical label
    splits: tuple[str, ...] = ()  # official split folders (publisher name), empty = none
    expected: dict[str, int] = field(default_factory=dict)  # split -> file count
    source: str = ""
    licence: str = ""
    # where `mribench data fetch` gets it: a direct archive URL, else a Kaggle dataset slug
    url: str | None = None
    kaggle: str | None = None
    sha256: str | None = None  # of the archive at `url`, when the publisher's bytes are pinned
    # bytes of the extracted set (measured on the copies in ../shared/data); bounds what
    # `fetch` lets an archive expand to
    expected_bytes: int | None = None
    note: str = ""
    # shipped inside the package at this folder: used from there, never searched for in data dirs
    bundled: Path | None = None

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.class_map.values()))


KNOWN: Registry[DatasetSpec] = Registry("dataset")

# a few images of the 7023 set shipped with the package (see sample/README.md), so the smoke suite
# runs on a machine with no data folder at all
SAMPLE_DIR = Path(__file__).resolve().parent / "sample"


def register(spec: DatasetSpec) -> DatasetSpec:
    return KNOWN.register(spec)


def count_files(spec: DatasetSpec, root: Path) -> dict[str, int]:
    """Files per official split folder (or "all"), without decoding; missing folders count 0."""
    out = {}
    for split in spec.splits or ("all",):
        base = root if split == "all" else root / split
        out[split] = sum(1 for cls in spec.class_map if (base / cls).is_dir()
                         for p in (base / cls).rglob("*") if p.is_file() and not p.name.startswith("."))
    return out


def get(name: str) -> DatasetSpec:
    return KNOWN.find(name)


register(DatasetSpec(
    name="brain-tumor-mri-7023", folder="brain-tumor-mri-7023",
    class_map={"glioma": "glioma", "meningioma": "meningioma", "notumor": "notumor",
               "pituitary": "pituitary"},
    splits=("Training", "Testing"), expected={"Training": 5712, "Testing": 1311},
    source="https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset",
    licence="CC0-1.0", kaggle="masoudnickparvar/brain-tumor-mri-dataset",
    expected_bytes=52_354_802))  # this copy re-encoded at 224 px; the original is larger
register(DatasetSpec(
    name="brain-tumor-classification-3264", folder="brain-tumor-classification-3264",
    class_map={"glioma_tumor": "glioma", "meningioma_tumor": "meningioma",
               "no_tumor": "notumor", "pituitary_tumor": "pituitary"},
    splits=("Training", "Testing"), expected={"Training": 2870, "Testing": 394},
    source="https://github.com/SartajBhuvaji/Brain-Tumor-Classification-DataSet",
    licence="MIT",
    url="https://github.com/SartajBhuvaji/Brain-Tumor-Classification-DataSet/archive/refs/heads/master.zip",
    expected_bytes=93_222_703))
register(DatasetSpec(
    name="brain-mri-binary-253", folder="brain-mri-binary-253",
    class_map={"no": "no", "yes": "yes"}, splits=(), expected={"all": 253},
    source="https://www.kaggle.com/datasets/navoneel/brain-mri-images-for-brain-tumor-detection",
    licence="unstated (Kaggle)", kaggle="navoneel/brain-mri-images-for-brain-tumor-detection",
    expected_bytes=8_685_050))
register(DatasetSpec(
    name="brain-tumor-mri-7023-sample", folder="sample",
    class_map={"glioma": "glioma", "meningioma": "meningioma", "notumor": "notumor",
               "pituitary": "pituitary"},
    splits=("Training", "Testing"), expected={"Training": 32, "Testing": 32},
    source="8 images per class and split of brain-tumor-mri-7023 at 64x64, shipped with the "
           "package (tools/make_sample.py)",
    licence="CC0-1.0", bundled=SAMPLE_DIR,
    note="for pipeline checks only: far too small for a benchmark result"))

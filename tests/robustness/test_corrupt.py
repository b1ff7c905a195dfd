"""The corruptions themselves: deterministic across processes, seeded per image, graded, and
kept in a self-checking store."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from mribench.robustness.corrupt import corrupt
from mribench.robustness.severities import ARTEFACTS, SEVERITIES, parameters


def brain(seed: int, size: int = 48) -> np.ndarray:
    """A grey 'slice': a bright ellipse with texture on a dark background, in 3 equal channels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    inside = (xx / 0.4) ** 2 + (yy / 0.33) ** 2 < 1
    img = np.where(inside, 120 + 40 * rng.random((size, size)), 10).astype(np.uint8)
    return np.repeat(img[..., None], 3, axis=2)


def digest(artefact: str, severity: int) -> str:
    return hashlib.sha256(corrupt(brain(0), artefact, severity, "key-0").tobytes()).hexdigest()


SCRIPT = """
import hashlib, sys
sys.path.insert(0, {tests!r})
from test_corrupt import brain
from mribench.robustness.corrupt import corrupt
for a in {artefacts!r}:
    print(hashlib.sha256(corrupt(brain(0), a, 3, "key-0").tobytes()).hexdigest())
"""


def test_same_image_and_severity_give_the_same_bytes_in_another_process():
    from pathlib import Path

    script = SCRIPT.format(tests=str(Path(__file__).parent), artefacts=list(ARTEFACTS))
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=120, check=True).stdout.split()
    assert other == [digest(a, 3) for a in ARTEFACTS]


def test_every_artefact_changes_the_image_and_keeps_it_grey_uint8():
    img = brain(0)
    for artefact in ARTEFACTS:
        out = corrupt(img, artefact, 5, "key-0")
        assert out.dtype == np.uint8 and out.shape == img.shape
        assert np.array_equal(out[..., 0], out[..., 2]), artefact  # grey stays grey
        assert np.abs(out.astype(int) - img).mean() > 0.5, artefact


def test_different_images_get_different_noise_and_severities_share_the_draw():
    img = brain(0)
    a, b = (corrupt(img, "noise", 3, key).astype(int) - img for key in ("image-a", "image-b"))
    assert not np.array_equal(a, b)
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.2  # independent draws
    # one image's noise pattern at two severities: the same draw, scaled (away from clipping)
    low, high = (corrupt(img, "noise", k, "image-a").astype(float) - img for k in (2, 4))
    assert np.corrcoef(low.ravel(), high.ravel())[0, 1] > 0.9


def test_bias_field_shades_the_head_by_the_tables_ratio_graded_by_severity():
    """A uniform head (grey 100 on black): the ratio of its 95th to its 5th percentile under the
    bias field is the table's ratio at every severity, its mean log-brightness is kept, and the
    severities scale one shading (the same draw) rather than drawing new ones."""
    size = 64
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    head = (xx / 0.42) ** 2 + (yy / 0.36) ** 2 < 1
    img = np.repeat(np.where(head, 100, 0).astype(np.uint8)[..., None], 3, axis=2)
    logs = []
    for k in SEVERITIES:
        out = corrupt(img, "bias_field", k, "image-a")[..., 0][head].astype(float)
        target = parameters("bias_field", k)["ratio"]
        high, low = np.percentile(out, (95, 5))
        assert abs(high / low - target) < 0.04 * target, (k, high / low)
        assert abs(np.exp(np.log(out).mean()) - 100) < 1.5, k
        logs.append(np.log(out / 100))
    assert parameters("bias_field", 5)["ratio"] >= 2  # severity 5 is a plain coil shading
    assert np.corrcoef(logs[1], logs[4])[0, 1] > 0.98
    other = np.log(corrupt(img, "bias_field", 5, "image-b")[..., 0][head] / 100)
    assert np.corrcoef(logs[4], other)[0, 1] < 0.9  # another image, another shading


def test_the_severity_table_version_is_part_of_the_run_key(monkeypatch):
    """A changed table must not let a resumed suite skip cells scored under the old one."""
    from mribench.config import robustness as config

    block = config.RobustnessConfig(artefacts=["noise"], severities=[1, 5])
    before = block.identity()
    monkeypatch.setattr(config, "VERSION", config.VERSION + 1)
    assert block.identity() != before


def test_unknown_artefact_or_severity_is_refused():
    with pytest.raises(ValueError, match="unknown artefact 'fog'"):
        parameters("fog", 1)
    with pytest.raises(ValueError, match="severity must be one of"):
        parameters("noise", 6)


def square_task(n: int = 60, size: int = 32):
    """Half the images hold a 3x3 bright square (class 1) on a dark background; the rule reads
    the brightest pixel. Clean, it is always right."""
    rng = np.random.default_rng(1)
    images, labels = [], []
    for i in range(n):
        img = np.full((size, size, 1), 40, np.uint8)
        if i % 2:
            y, x = rng.integers(6, size - 9, size=2)
            img[y:y + 3, x:x + 3] = 200
        images.append(img)
        labels.append(i % 2)
    return images, np.array(labels)


def rule(img: np.ndarray) -> int:
    return int(img.max() > 100)


@pytest.mark.parametrize("artefact", ["blur", "noise"])
def test_a_known_rule_degrades_monotonically_with_severity(artefact):
    images, labels = square_task()
    clean = np.mean([rule(im) == y for im, y in zip(images, labels)])
    assert clean == 1.0
    acc = [np.mean([rule(corrupt(im, artefact, k, f"img-{i}")) == y
                    for i, (im, y) in enumerate(zip(images, labels))]) for k in SEVERITIES]
    assert all(a >= b for a, b in zip(acc, acc[1:])), acc  # never better at a higher severity
    assert acc[0] > 0.95 and acc[-1] < 0.75, acc  # barely touched at 1, clearly hurt at 5


def test_the_store_serves_the_same_pixels_and_rebuilds_a_damaged_row(tmp_path, capsys):
    from PIL import Image

    from mribench.config.schema import PreprocessConfig
    from mribench.data import images
    from mribench.robustness import cache

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(brain(i)[..., 0]).save(paths[-1])
    images.set_cache_dir(tmp_path / "cache")
    pre = PreprocessConfig(image_size=32)
    try:
        rows = cache.corrupted_rows(paths, pre, "ghosting", 4)
        first = [store.read(sha) for store, sha in rows]
        clean = [images.load_image(p, pre) for p in paths]
        assert all(np.array_equal(f, corrupt(c, "ghosting", 4, sha))
                   for f, c, (_, sha) in zip(first, clean, rows))
        store = rows[0][0]
        assert "ghosting-s4" in str(store.file) and store.meta_file.is_file()
        cache._memo.clear()  # a later invocation: the entry on disk, checked row by row
        with open(store.file, "r+b") as fh:
            fh.seek(store.offset + store.row_bytes + 100)
            fh.write(bytes([255 - first[1].ravel()[100]]))
        again = cache.corrupted_rows(paths, pre, "ghosting", 4)
        assert again[0][0] is not store  # loaded from disk, not this process's memo
        assert all(np.array_equal(s.read(sha), f) for (s, sha), f in zip(again, first))
        assert "does not match its checksum" in capsys.readouterr().err
    finally:
        cache._memo.clear()
        images.set_cache_dir(None)

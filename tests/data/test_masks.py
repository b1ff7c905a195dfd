"""Brain masks on real images of the three sets, against boxes read off by eye, and their cache.

HAND holds, per image, the head's extent (top, bottom, left, right rows/columns at 128 px,
bilinear) as read by a person from the image drawn on an 8-px grid, without the mask, and which
corners (6x6 px) are plainly background. The mask must match each side within TOLERANCE px.
"""
import numpy as np
import pytest

from mribench.config.schema import PreprocessConfig
from mribench.data import images, masks

PRE = PreprocessConfig(image_size=128, channels=3, interpolation="bilinear")
TOLERANCE = 6
ALL_CORNERS = ("tl", "tr", "bl", "br")
HAND = {  # path under the data folder: ((top, bottom, left, right), corners that are background)
    "brain-tumor-mri-7023/Testing/glioma/Te-gl_0150.jpg": ((3, 127, 13, 106), ALL_CORNERS),
    "brain-tumor-mri-7023/Testing/meningioma/Te-me_0153.jpg": ((4, 127, 17, 104), ALL_CORNERS),
    # bright annotation marks in both top corners and a line along the top edge
    "brain-tumor-mri-7023/Testing/notumor/Te-no_0202.jpg": ((16, 118, 19, 110), ALL_CORNERS),
    "brain-tumor-mri-7023/Testing/pituitary/Te-pi_0150.jpg": ((4, 120, 12, 113), ALL_CORNERS),
    # sagittal, face reaching the left edge
    "brain-tumor-classification-3264/Testing/glioma_tumor/image(54).jpg":
        ((20, 127, 0, 118), ("tl", "tr")),
    "brain-tumor-classification-3264/Testing/meningioma_tumor/image(48).jpg":
        ((2, 127, 0, 127), ("tl",)),
    "brain-tumor-classification-3264/Testing/no_tumor/image(52).jpg":
        ((9, 121, 19, 107), ALL_CORNERS),  # CT
    "brain-tumor-classification-3264/Testing/pituitary_tumor/image(56).jpg":
        ((0, 127, 0, 127), ()),  # coronal, the head fills the frame
    "brain-mri-binary-253/no/N1.JPG": ((1, 124, 10, 120), ALL_CORNERS),
    "brain-mri-binary-253/yes/Y25.jpg": ((6, 123, 6, 122), ALL_CORNERS),
}


def corner(mask: np.ndarray, which: str) -> np.ndarray:
    rows = slice(0, 6) if which[0] == "t" else slice(-6, None)
    cols = slice(0, 6) if which[1] == "l" else slice(-6, None)
    return mask[rows, cols]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    images.set_cache_dir(None)
    masks._memory.clear()
    yield tmp_path / "cache"
    images.set_cache_dir(None)
    masks._memory.clear()


@pytest.mark.parametrize("relative", sorted(HAND))
def test_mask_covers_the_head_not_the_corners(relative, data_dir, cache):
    (top, bottom, left, right), background = HAND[relative]
    mask = masks.load_mask(data_dir / relative, PRE)
    assert mask.shape == (128, 128) and mask.dtype == bool
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    found = (rows[0], rows[-1], cols[0], cols[-1])
    assert np.abs(np.subtract(found, (top, bottom, left, right))).max() <= TOLERANCE, found
    for which in background:
        assert not corner(mask, which).any(), which
    # one piece, no holes inside the head: the hand box's middle is in, and so is 90% of the
    # box's inner half (ventricles and dark tumour cores are filled)
    cy, cx, hy, hx = (top + bottom) // 2, (left + right) // 2, (bottom - top) // 4, \
        (right - left) // 4
    assert mask[cy, cx] and mask[cy - hy:cy + hy, cx - hx:cx + hx].mean() > 0.9


def test_masks_are_cached_on_disk_by_content_and_preprocessing(data_dir, cache, tmp_path):
    source = data_dir / "brain-mri-binary-253/no/N1.JPG"
    copy = tmp_path / "renamed.jpg"
    copy.write_bytes(source.read_bytes())
    first = masks.load_mask(source, PRE)
    files = sorted((cache / "masks").rglob("*.npy"))
    assert len(files) == 1 and files[0].stat().st_size < 128 * 128 / 8 + 200  # bit-packed
    masks._memory.clear()
    assert np.array_equal(masks.load_mask(copy, PRE), first)  # same content: same entry
    assert len(sorted((cache / "masks").rglob("*.npy"))) == 1
    small = masks.load_mask(source, PreprocessConfig(image_size=64))
    assert small.shape == (64, 64) and len(sorted((cache / "masks").rglob("*.npy"))) == 2
    # a damaged entry is computed again, never trusted
    files[0].write_bytes(b"not a numpy file")
    masks._memory.clear()
    assert np.array_equal(masks.load_mask(source, PRE), first)


def test_blank_and_tiny_foregrounds_fall_back_to_the_whole_image():
    assert masks.brain_mask(np.zeros((32, 32), np.uint8)).all()
    speck = np.zeros((64, 64), np.uint8)
    speck[30:32, 30:32] = 255  # 0.1% of the image: not a head
    assert masks.brain_mask(speck).all()
    disc = np.zeros((64, 64, 3), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    disc[(yy - 32) ** 2 + (xx - 32) ** 2 < 20 ** 2] = 120
    found = masks.brain_mask(disc)
    assert abs(found.mean() - np.pi * 20 ** 2 / 64 ** 2) < 0.03 and not found[0, 0]


def test_grey_and_rgb_pixels_give_the_same_mask():
    rng = np.random.default_rng(0)
    grey = (rng.random((48, 48)) * 20).astype(np.uint8)
    grey[8:40, 10:38] += 100
    rgb = np.repeat(grey[..., None], 3, axis=2)
    assert np.array_equal(masks.brain_mask(grey), masks.brain_mask(rgb))

"""Explanations on a synthetic task whose answer is known.

A bright square in the left or right half decides the class; a dim square sits in the other
half, so removing the bright one flips the evidence. A tiny CNN learns it in well under a second.
"""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from mribench.config.schema import ExplainConfig
from mribench.explain import explainer as explain

SIZE, SQUARE = 40, 6
CLASSES = ["left", "right"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_images(n: int, seed: int, channels: int = 3):
    rng = np.random.default_rng(seed)
    raw = (rng.random((n, SIZE, SIZE, channels)) * 60).astype(np.uint8)
    labels = rng.integers(0, 2, n)
    for img, y in zip(raw, labels, strict=True):
        for value, half in ((230, y), (110, 1 - y)):
            r = rng.integers(0, SIZE - SQUARE)
            c = rng.integers(0, SIZE // 2 - SQUARE) + half * SIZE // 2
            img[r:r + SQUARE, c:c + SQUARE] = value
    return raw, labels


def normalise(raw: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(raw).float().permute(0, 3, 1, 2) / 255 - 0.5) / 0.25


class TinyCNN(nn.Module):
    def __init__(self, channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        # flatten, not pooling: the class is a position, which global pooling would erase
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * (SIZE // 4) ** 2, 2))

    def forward(self, x):
        return self.head(self.features(x))


def train(model: nn.Module, channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    raw, labels = make_images(400, seed=0, channels=channels)
    x, y = normalise(raw), torch.from_numpy(labels)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(4):
        for i in range(0, len(x), 32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
    return model


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(1)
    untrained = TinyCNN()
    return train(TinyCNN()), untrained


@pytest.fixture(scope="module")
def test_set():
    raw, labels = make_images(8, seed=1)
    return list(raw), normalise(raw), [int(y) for y in labels]


CFG = ExplainConfig(methods=["gradcam", "lime"], per_class=4, lime_samples=100, lime_features=5,
                    lime_segments=30, seed=0)
# the squares task has no background: the whole image is "brain"
EVERYWHERE = np.ones((8, SIZE, SIZE), dtype=bool)


@pytest.fixture(scope="module")
def results(models, test_set):
    raw, x, labels = test_set
    return [explain.explain(m, m.features[-1], raw, x, labels, CLASSES, CFG, masks=EVERYWHERE)
            for m in models]


def test_trained_model_learned_the_task(models, test_set):
    _, x, labels = test_set
    with torch.no_grad():
        assert (models[0](x).argmax(1).numpy() == labels).mean() == 1.0


def test_every_metric_is_logged_and_finite(results):
    expected = {f"{m}_{k}" for m in ("gradcam", "lime")
                for k in ("deletion_auc", "insertion_auc", "road_combined", "seconds",
                          "faithfulness_seconds", "empty_fraction", "in_mask_fraction",
                          "flag_outside_brain", "randomisation_spearman",
                          "flag_randomisation")}
    expected |= {"random_deletion_auc", "random_insertion_auc", "gradcam_map_side",
                 "mask_area_fraction", "lime_background_value", "randomisation_seconds"}
    for result in results:
        assert set(result.metrics) == expected
        assert all(np.isfinite(v) for v in result.metrics.values())
        assert all(0 <= result.metrics[k] <= 1 for k in expected if k.endswith("_auc"))


def test_faithfulness_separates_trained_from_random_model(results):
    trained, untrained = (r.metrics for r in results)
    for method in ("gradcam", "lime"):
        # the trained model's maps remove the evidence faster than a random pixel order...
        assert trained[f"{method}_deletion_auc"] < trained["random_deletion_auc"] - 0.1
        # ...and ROAD (least- minus most-relevant-first) sees it too
        assert trained[f"{method}_road_combined"] > untrained[f"{method}_road_combined"] + 0.03
        # an untrained model is unsure of everything: nothing to delete, maps or not
        assert abs(untrained[f"{method}_deletion_auc"] - untrained["random_deletion_auc"]) < 0.05


def test_gradcam_maps_are_scaled_and_empty_maps_counted(results):
    maps = results[0].maps["gradcam"]
    assert maps.shape == (8, SIZE, SIZE) and maps.min() >= 0
    peaks = maps.max(axis=(1, 2))
    assert np.all((peaks == 0) | (np.abs(peaks - 1) < 1e-5))  # min-max scaled, or empty
    assert results[0].metrics["gradcam_empty_fraction"] == pytest.approx(np.mean(peaks == 0))


def test_lime_map_weights_superpixels(results):
    lime_maps = results[0].maps["lime"]
    assert lime_maps.shape == (8, SIZE, SIZE)
    # piecewise constant over superpixels, with both supporting and opposing regions overall
    assert 2 < len(np.unique(lime_maps[0])) <= 40
    assert (lime_maps > 0).any() and (lime_maps < 0).any()


def test_lime_overlay_paints_only_weighted_superpixels(results):
    """A flat LIME explanation (a saturated model) must look empty, not all green."""
    from mribench.explain import lime_maps as explain_lime
    lime_maps = results[0].maps["lime"]
    flat = lime_maps.max(axis=(1, 2)) == lime_maps.min(axis=(1, 2))
    assert results[0].metrics["lime_empty_fraction"] == pytest.approx(flat.mean())
    img = np.full((SIZE, SIZE, 3), 0.5)
    seg = 1 + (np.arange(SIZE)[:, None] // 10) * 4 + np.arange(SIZE)[None, :] // 10  # 16 tiles

    def green(overlay):
        return (overlay[..., 1] > overlay[..., 0] + 0.3) & (overlay[..., 1] > overlay[..., 2] + 0.3)

    for weight in (0.0, 0.3):  # all zero, all equal: nothing singled out
        overlay, = explain_lime.lime_overlays([img], np.full((1, SIZE, SIZE), weight), [seg], 5)
        assert green(overlay).mean() < 0.01
    one = np.where(seg == 6, 0.5, 0.0)[None]
    overlay, = explain_lime.lime_overlays([img], one, [seg], 5)
    assert green(overlay)[seg == 6].mean() > 0.6 and green(overlay)[seg != 6].mean() < 0.01


def test_one_grid_per_method_with_titles(results):
    for fig in results[0].figures.values():
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert len(titles) == 8
        assert all(t.startswith("true: ") and "\npred: " in t and "(1.00)" in t for t in titles)
        assert len(fig.axes) == 16  # image above overlay, for each of the 8 images
        plt.close(fig)


def test_every_cam_method_at_its_own_layer(models, test_set):
    """Grad-CAM, HiResCAM, Grad-CAM++ on the last stage (10x10), LayerCAM on an earlier one
    (20x20): each runs on its own layer and gives maps in [0, 1]."""
    raw, x, labels = test_set
    trained = models[0]
    last, earlier = trained.features[-1], trained.features[4]
    layers = {"gradcam": last, "hirescam": last, "gradcampp": last, "layercam": earlier}
    cfg = ExplainConfig(methods=list(layers), faithfulness=False, randomisation="none")
    result = explain.explain(trained, layers, raw, x, labels, CLASSES, cfg, masks=EVERYWHERE)
    for method in layers:
        maps = result.maps[method]
        assert maps.shape == (8, SIZE, SIZE) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
        assert (maps.max(axis=(1, 2)) > 0).any()
        plt.close(result.figures[method])
    assert result.metrics["gradcam_map_side"] == 10 and result.metrics["layercam_map_side"] == 20
    assert result.tags["explain_layer_layercam"] == "features.4 (20x20)"


CHECKER = torch.tensor([[(i + j) % 2 * 2.0 - 1 for j in range(8)] for i in range(8)])


class RegionModel(nn.Module):
    """Class 1 iff the top-left quadrant holds a fine checkerboard: the right map is known, and
    both deleting it (to 0) and blurring it (the insertion start) remove the evidence."""

    def forward(self, x):
        evidence = 8 * ((x[:, :, :8, :8] * CHECKER).mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([-evidence, evidence], dim=1)


def test_deletion_and_insertion_rank_maps_by_truth():
    from mribench.explain.faithfulness import deletion_insertion

    x = torch.zeros(1, 3, 16, 16)
    x[:, :, :8, :8] = CHECKER
    truth = np.zeros((1, 16, 16))
    truth[0, :8, :8] = 1.0
    scores = {name: deletion_insertion(RegionModel(), x, sal, [1], torch.zeros(3))
              for name, sal in (("truth", truth), ("inverse", 1 - truth))}
    (del_truth,), (ins_truth,) = scores["truth"]
    (del_inverse,), (ins_inverse,) = scores["inverse"]
    assert del_truth < 0.3 and del_inverse > 0.7  # deleting the evidence first kills the score
    assert ins_truth > 0.7 and ins_inverse < 0.3  # inserting it first restores it


def test_select_images_by_file_identity():
    labels = [0] * 10 + [1] * 3 + [2] * 20
    files = [f"{c}/img{i}.jpg" for i, c in enumerate(labels)]
    picks = explain.select_images(files, labels, 4, per_class=4, seed=7)
    assert [labels[i] for i in picks] == [0] * 4 + [1] * 3 + [2] * 4  # class 1 has only 3, 3 none
    assert picks == explain.select_images(files, labels, 4, per_class=4, seed=7)
    assert picks != explain.select_images(files, labels, 4, per_class=4, seed=8)
    chosen = [files[i] for i in picks]
    # the same files whatever the order of the list (another cell's split, another sort) ...
    order = np.random.default_rng(0).permutation(len(files))
    shuffled = explain.select_images([files[i] for i in order], [labels[i] for i in order], 4,
                                     4, 7)
    assert sorted(files[order[i]] for i in shuffled) == sorted(chosen)
    # ... and whatever else the split holds: a file keeps its place among the others
    more = explain.select_images(files + ["0/extra.jpg"], labels + [0], 4, 4, 7)
    assert set(chosen) - {(files + ["0/extra.jpg"])[i] for i in more} <= {chosen[3]}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        explain.select_images(["a", "b"], [0, 2], 2, 1, 0)


def test_grayscale_and_frozen_backbone():
    model = train(TinyCNN(channels=1), channels=1)
    for p in model.features.parameters():
        p.requires_grad_(False)  # a frozen backbone: Grad-CAM must still get gradients
    model.features.eval()  # and stays in eval mode while the head trains
    raw, labels = make_images(2, seed=3, channels=1)
    cfg = ExplainConfig(methods=["gradcam", "lime"], lime_samples=20, lime_segments=20,
                        faithfulness=False)
    result = explain.explain(model, model.features[-1], [r[..., 0] for r in raw], normalise(raw),
                             labels.tolist(), CLASSES, cfg, masks=EVERYWHERE[:2])
    assert result.maps["gradcam"].max() == pytest.approx(1.0)
    assert {"gradcam_seconds", "gradcam_empty_fraction", "lime_seconds",
            "lime_empty_fraction", "gradcam_randomisation_spearman"} <= set(result.metrics)
    assert not any("deletion" in k for k in result.metrics)  # faithfulness off
    assert model.training and not model.features[0].training  # every module's mode restored
    for fig in result.figures.values():
        plt.close(fig)


class TinyViT(nn.Module):
    """Patch tokens plus a class token, as timm's ViTs: the Grad-CAM layer outputs [B, T, D]."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 8, stride=8)  # 40 px -> 5 x 5 tokens
        self.cls = nn.Parameter(torch.randn(1, 1, 16))
        self.block = nn.Sequential(nn.Linear(16, 16), nn.GELU())
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = self.block(torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1))
        return self.head(tokens.mean(dim=1))


def test_gradcam_on_transformer_tokens(test_set):
    raw, x, labels = test_set
    torch.manual_seed(0)
    model = TinyViT()
    cfg = ExplainConfig(methods=["gradcam"], faithfulness=False)
    result = explain.explain(model, model.block, raw, x, labels, CLASSES, cfg)
    cams = result.maps["gradcam"]
    assert cams.shape == (8, SIZE, SIZE) and np.all(np.isfinite(cams))
    # 5 x 5 token grid upsampled: the map varies across the image for some image
    assert (cams.max(axis=(1, 2)) > cams.min(axis=(1, 2))).any()
    plt.close(result.figures["gradcam"])


class RegisterViT(TinyViT):
    """A class token and four registers before a 2 x 2 patch grid (20 px patches): 9 tokens,
    which the largest square would read as a 3 x 3 grid."""

    num_prefix_tokens = 5  # timm's attribute

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 20, stride=20)
        self.cls = nn.Parameter(torch.randn(1, 5, 16))


def test_gradcam_drops_every_prefix_token_of_a_small_grid(test_set):
    raw, x, labels = test_set
    torch.manual_seed(0)
    model = RegisterViT()
    cfg = ExplainConfig(methods=["gradcam"], faithfulness=False, randomisation="none")
    result = explain.explain(model, model.block, raw[:2], x[:2], labels[:2], CLASSES, cfg)
    assert result.metrics["gradcam_map_side"] == 2
    assert result.maps["gradcam"].shape == (2, SIZE, SIZE)
    plt.close(result.figures["gradcam"])


def test_bad_inputs_are_named(models, test_set):
    raw, x, labels = test_set
    with pytest.raises(ValueError, match="not a per-channel affine"):
        explain.explain(models[0], models[0].features[-1], raw, x.flip(-1), labels, CLASSES, CFG)
    with pytest.raises(ValueError, match="did not produce a tensor"):
        explain.explain(models[0], nn.Conv2d(3, 3, 1), raw, x, labels, CLASSES, CFG)
    with pytest.raises(ValueError, match="raw image 0 must be uint8"):
        explain.explain(models[0], models[0].features[-1], [r.astype(float) for r in raw], x,
                        labels, CLASSES, CFG)

"""Where the heat falls, LIME on the brain only, and the model-randomisation check.

The squares task of test_explain.py (a bright square's side decides the class) gives a trained
model whose right answer is known; a model whose weights are buffers (not parameters) is one
that randomisation cannot change, the case the check exists to catch.
"""
import copy

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from test_explain import CLASSES, SIZE, TinyCNN, make_images, normalise, train
from torch import nn

from mribench.config.schema import ExplainConfig
from mribench.data.masks import brain_mask
from mribench.explain import checks as explain_checks
from mribench.explain import explainer as explain

pytestmark = pytest.mark.usefixtures("one_thread")


def test_in_mask_fraction():
    mask = np.zeros((1, 20, 20), dtype=bool)
    mask[0, 5:15, 2:18] = True
    inside = np.where(mask, np.random.default_rng(0).random((1, 20, 20)), 0.0)
    assert explain_checks.in_mask_fraction(inside, mask)[0] == pytest.approx(1.0)
    uniform = np.full((1, 20, 20), 0.3)
    assert explain_checks.in_mask_fraction(uniform, mask)[0] == pytest.approx(mask.mean())
    assert explain_checks.in_mask_fraction(-uniform, mask)[0] == pytest.approx(mask.mean())
    assert explain_checks.in_mask_fraction(np.where(mask, 0.0, 1.0), mask)[0] == 0
    assert np.isnan(explain_checks.in_mask_fraction(np.zeros((1, 20, 20)), mask)[0])


class CornerModel(nn.Module):
    """Decides by the top-left corner (background in a scan) and a little by the middle: LIME
    over the whole image would make the corner its strongest superpixel."""

    def forward(self, x):
        corner = x[:, :, :8, :8].mean(dim=(1, 2, 3))
        middle = x[:, :, 24:40, 24:40].mean(dim=(1, 2, 3))
        evidence = 40 * (corner + 1) + 2 * middle  # a black corner (-1) adds nothing
        return torch.stack([-evidence, evidence], dim=1)


def bordered_images(n: int = 2, size: int = 64, border: int = 12) -> np.ndarray:
    """Textured squares on a black border, like a head on a scan's background."""
    rng = np.random.default_rng(3)
    raw = np.zeros((n, size, size, 3), np.uint8)
    raw[:, border:-border, border:-border] = rng.integers(60, 220, (n, size - 2 * border,
                                                                    size - 2 * border, 1))
    return raw


def lime_on(raw, hide, masks=None):
    x = torch.from_numpy(raw).float().permute(0, 3, 1, 2) / 255 * 2 - 1
    cfg = ExplainConfig(methods=["lime"], lime_samples=60, lime_segments=30, lime_features=5,
                        lime_hide=hide, faithfulness=False, randomisation="none")
    result = explain.explain(CornerModel(), nn.Identity(), list(raw), x, [1] * len(raw),
                             CLASSES, cfg, masks=masks)
    plt.close(result.figures["lime"])
    return result


@pytest.mark.parametrize("hide", ["background", "blur"])
def test_lime_never_selects_a_border_superpixel(hide):
    raw = bordered_images()
    result = lime_on(raw, hide)
    masks, maps = result.masks, result.maps["lime"]
    # the border is background (the mask may round the square's edge by a pixel or two)
    assert not masks[:, :10].any() and not masks[:, :, :10].any()
    assert masks[:, 14:-14, 14:-14].all()
    assert np.all(maps[~masks] == 0)  # background is not a feature: it carries no weight
    assert all(np.abs(m[mask]).max() > 0 for m, mask in zip(maps, masks, strict=True))
    assert result.metrics["lime_in_mask_fraction"] == 1.0
    assert result.tags["explain_lime_hide"] == hide
    if hide == "background":  # the scans' own background: black here
        assert result.metrics["lime_background_value"] == 0
    else:
        assert "lime_background_value" not in result.metrics


def test_lime_over_the_whole_image_would_pick_the_corner():
    """The reason for the mask: with the border as features (and hidden by blurring, as a
    colour no scan has would), the model's corner becomes the strongest superpixel."""
    raw = bordered_images()
    result = lime_on(raw, "blur", masks=np.ones(raw.shape[:3], dtype=bool))
    for m in result.maps["lime"]:
        strongest = np.abs(m) == np.abs(m).max()
        assert strongest[:8, :8].any()


def test_reinitialise_changes_every_weight_seeded_and_leaves_the_original():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(2, 3, 8, 8))
    with torch.no_grad():  # as after training: batch-norm away from its initial values
        model[1].running_mean += 1
        model[1].weight.mul_(2)
    scale = nn.Parameter(torch.arange(6.0))  # a parameter no layer owns: permuted
    model.register_parameter("scale", scale)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twins = [next(explain_checks.randomised_models(model, "full", None, seed=5))[1]
             for _ in range(2)]
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value)  # the trained model is untouched
    a, b = (t.state_dict() for t in twins)
    for key in before:
        assert torch.equal(a[key], b[key])  # seeded
    for key in ("0.weight", "1.weight", "3.weight", "1.running_mean"):
        assert not torch.equal(a[key], before[key]), key
    assert sorted(a["scale"].tolist()) == list(range(6)) and not torch.equal(a["scale"], scale)


class Fixed(nn.Module):
    """A trained conv or linear layer whose weights are plain buffers of a module with no
    reset_parameters: re-initialising "the weights" cannot reach them."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.conv = isinstance(layer, nn.Conv2d)
        self.padding = layer.padding if self.conv else 0
        self.register_buffer("w", layer.weight.detach().clone())
        self.register_buffer("b", layer.bias.detach().clone())

    def forward(self, x):
        if self.conv:
            return nn.functional.conv2d(x, self.w, self.b, padding=self.padding)
        return nn.functional.linear(x, self.w, self.b)


class FixedCNN(nn.Module):
    """The trained TinyCNN with fixed weights: any method's maps stay the same under
    randomisation. (One parameter the forward pass never uses: pytorch-grad-cam reads the
    device from the model's parameters.)"""

    def __init__(self, trained: TinyCNN):
        super().__init__()
        def fixed(seq):
            return nn.Sequential(*[Fixed(m) if isinstance(m, (nn.Conv2d, nn.Linear))
                                   else copy.deepcopy(m) for m in seq])
        self.features, self.head = fixed(trained.features), fixed(trained.head)
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def squares():
    raw, labels = make_images(4, seed=1)
    return list(raw), normalise(raw), [int(y) for y in labels]


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(1)
    return train(TinyCNN())


def run(model, layer, squares, mode="full"):
    raw, x, labels = squares
    cfg = ExplainConfig(methods=["gradcam", "lime"], lime_samples=60, lime_segments=20,
                        faithfulness=False, randomisation=mode)
    result = explain.explain(model, layer, raw, x, labels, CLASSES, cfg,
                             masks=np.ones((len(raw), SIZE, SIZE), dtype=bool))
    for fig in result.figures.values():
        plt.close(fig)
    return result


def test_randomisation_check_passes_gradcam_on_a_trained_model(trained, squares):
    """Grad-CAM passes Adebayo et al.'s check. (LIME is not asserted: on this task the evidence
    is the brightest square, and blacking out bright superpixels moves any network's output,
    random or not, so LIME's |weights| rank alike on both models; a real finding, not a bug.)"""
    result = run(trained, trained.features[-1], squares)
    rho = result.metrics["gradcam_randomisation_spearman"]
    assert -1 <= rho < 0.5 and result.metrics["gradcam_flag_randomisation"] == 0, rho
    assert "gradcam: maps barely change" not in result.tags["explain_flags"]
    for method in ("gradcam", "lime"):
        assert result.randomised[method].shape == result.maps[method].shape
        assert np.isfinite(result.metrics[f"{method}_randomisation_spearman"])


def test_randomisation_check_flags_maps_that_do_not_depend_on_the_weights(trained, squares):
    fixed = FixedCNN(trained)
    assert [p.numel() for p in fixed.parameters()] == [1]
    _, x, _ = squares
    with torch.no_grad():
        assert torch.allclose(fixed(x), trained(x))
    result = run(fixed, fixed.features[-1], squares)
    for method in ("gradcam", "lime"):
        assert result.metrics[f"{method}_randomisation_spearman"] == pytest.approx(1.0)
        assert result.metrics[f"{method}_flag_randomisation"] == 1
        assert f"{method}: maps barely change" in result.tags["explain_flags"]


def test_cascading_randomisation_reports_every_stage(trained, squares):
    result = run(trained, trained.features[-1], squares, mode="cascading")
    for method in ("gradcam", "lime"):
        curve = result.curves[method]
        assert len(curve) == 2  # head, then features: TinyCNN's children, top first
        assert result.metrics[f"{method}_randomisation_spearman"] == curve[-1]


def test_brain_mask_of_a_real_scan_keeps_gradcam_heat_score_honest(data_dir):
    """A map that is uniform over the image scores the mask's area; one on the head scores 1."""
    from PIL import Image

    path = data_dir / "brain-tumor-mri-7023/Testing/glioma/Te-gl_0150.jpg"
    pixels = np.asarray(Image.open(path).convert("RGB").resize((64, 64)))
    mask = brain_mask(pixels)[None]
    assert explain_checks.in_mask_fraction(np.ones((1, 64, 64)), mask)[0] == \
        pytest.approx(mask.mean())
    assert explain_checks.in_mask_fraction(mask * 0.7, mask)[0] == 1.0

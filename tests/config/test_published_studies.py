"""The four studies as published (issue 25).

Weight files in each hub's real key format load into every zoo model (timm's format, and
torchvision's, with and without batch-norm `num_batches_tracked` entries, with the auxiliary
heads the hubs ship); the heads the papers describe can be built; every study suite loads and
dry-runs, its `published:` names only metrics a cell logs, and its paper-split variant differs
from it only in the split.
"""
from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from mribench.config.schema import HeadConfig, ModelConfig, StrategyConfig
from mribench.config.suite_file import load_suite
from mribench.models import registry
from mribench.models.archs import create_network, make_input_conv, make_trunk
from mribench.models.build import build
from mribench.models.heads import make_head, parse_layers, split_pooling
from mribench.models.weights import WEIGHTS_DIR_ENV, load_into, step_counters
from mribench.run import cell as cell_module
from mribench.run import scoring as scoring_module
from mribench.stats import metrics

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "suites"
STUDIES = sorted(p.stem for p in SUITES.glob("study_*.yaml"))
FROZEN = StrategyConfig(name="frozen")
COUNTER = "num_batches_tracked"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("BENCHMARK_OFFLINE", "1")
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)


# --- weight files as the hubs publish them ------------------------------------------------

def _shifted(state: dict) -> dict:
    """The same keys with other values (so a load is visible), counters kept."""
    return {k: (v + 1.0 if v.is_floating_point() else v.clone()) for k, v in state.items()}


def _without_counters(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.endswith(f".{COUNTER}")}


def _save(state: dict, path: Path) -> Path:
    if path.suffix == ".safetensors":  # the Hugging Face hub's format (timm)
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def _tv_densenet_published_keys(state: dict) -> dict:
    """torchvision's published DenseNet file predates its current names: 'norm.1' for 'norm1'."""
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))([12])\.(weight|bias|running_mean|"
                         r"running_var)$")
    return {pattern.sub(r"\1.\2.\3", k): v for k, v in state.items()}


def _torchvision_state(name: str) -> dict:
    """The model's file in torchvision's own key format, as torchvision publishes it (auxiliary
    heads included), randomly initialised."""
    import torchvision.models as tvm

    torch.manual_seed(7)
    if name == "googlenet":
        net = tvm.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    elif name == "inception_v3":
        net = tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)
    elif name == "shufflenet_v2":
        net = tvm.shufflenet_v2_x1_0()
    else:
        net = getattr(tvm, name)()
    state = net.state_dict()
    return _tv_densenet_published_keys(state) if name == "densenet121" else state


# timm-format files: what the Hugging Face hub serves for every timm entry
TIMM_FORMAT = [n for n in registry.names() if registry.get(n).source == "timm"
               and registry.get(n).pretrained_available and n != "vgg16"]
# torchvision-format files: the torchvision originals of timm's tv_in1k ports, and the
# torchvision entries themselves (VGG16 has its own, single test: it is huge)
TV_FORMAT = ["resnet18", "resnet50", "densenet121", "inception_v3", "googlenet", "shufflenet_v2"]


def _check_loaded(net: nn.Module, state: dict, keys: list[str]) -> None:
    loaded = net.state_dict()
    for key in keys:
        assert torch.equal(loaded[key], state[key]), key


@pytest.mark.parametrize("counters", [True, False], ids=["with_counters", "without_counters"])
@pytest.mark.parametrize("name", TIMM_FORMAT)
def test_timm_hub_file_loads(name, counters, tmp_path):
    spec = registry.get(name)
    net = create_network(spec, pretrained=True)
    state = _shifted(net.state_dict())
    if name == "inception_v3":  # the hub file keeps torchvision's auxiliary classifier
        state |= {k: v for k, v in _torchvision_state(name).items() if k.startswith("AuxLogits.")}
    state = state if counters else _without_counters(state)
    path = _save(state, tmp_path / f"{name}.safetensors")
    load_into(net, spec, path)
    floats = [k for k, v in net.state_dict().items() if v.is_floating_point()]
    _check_loaded(net, state, floats)
    if not counters:  # the network keeps its own counters
        assert all(int(net.state_dict()[k]) == 0 for k in step_counters(net))


@pytest.mark.parametrize("counters", [True, False], ids=["with_counters", "without_counters"])
@pytest.mark.parametrize("name", TV_FORMAT)
def test_torchvision_file_loads_and_builds(name, counters, tmp_path):
    """torchvision's format (DenseNet with its old 'norm.1' names; GoogLeNet with aux1/aux2,
    InceptionV3 with AuxLogits), through the whole build at a small image size."""
    spec = registry.get(name)
    state = _torchvision_state(name)
    state = state if counters else _without_counters(state)
    path = _save(state, tmp_path / f"{name}.pth")
    size = max(spec.min_size, 32)
    built = build(ModelConfig(name=name, weights=str(path)), FROZEN, 4, image_size=size)
    assert built.info["weight_source"] == "file"
    loaded = built.backbone.net.state_dict()
    probe = {"resnet18": ("layer4.1.bn2.running_var", "layer4.1.bn2.running_var"),
             "resnet50": ("layer3.2.conv2.weight", "layer3.2.conv2.weight"),
             "densenet121": ("features.denseblock4.denselayer16.conv2.weight",
                             "features.denseblock4.denselayer16.conv.2.weight"),
             "inception_v3": ("Mixed_7c.branch_pool.conv.weight", "Mixed_7c.branch_pool.conv.weight"),
             "googlenet": ("inception5b.branch4.1.bn.running_mean",
                           "inception5b.branch4.1.bn.running_mean"),
             "shufflenet_v2": ("conv5.0.weight", "conv5.0.weight")}[name]
    assert torch.equal(loaded[probe[0]], state[probe[1]])
    assert built.model(torch.randn(2, 3, size, size)).shape == (2, 4)


def test_vgg16_files_of_both_hubs_load(tmp_path):
    """VGG16 (no batch norm) once: timm's format, then torchvision's classifier.N names."""
    spec = registry.get("vgg16")
    net = create_network(spec, pretrained=True)
    timm_state = _shifted(net.state_dict())
    load_into(net, spec, _save(timm_state, tmp_path / "vgg16.safetensors"))
    _check_loaded(net, timm_state, ["features.28.weight", "pre_logits.fc1.weight", "head.fc.bias"])
    # torchvision's file: the same tensors under its names, fc6/fc7 as Linear layers
    rename = {"pre_logits.fc1": "classifier.0", "pre_logits.fc2": "classifier.3",
              "head.fc": "classifier.6"}
    tv_state = {}
    for key, value in timm_state.items():
        prefix = key.rsplit(".", 1)[0]
        new = key.replace(prefix, rename.get(prefix, prefix), 1)
        tv_state[new] = (value * 2).reshape(value.shape[0], -1) if new.endswith(
            ("classifier.0.weight", "classifier.3.weight")) else value * 2
    load_into(net, spec, _save(tv_state, tmp_path / "vgg16.pth"))
    assert torch.equal(net.state_dict()["pre_logits.fc1.weight"].flatten(),
                       tv_state["classifier.0.weight"].flatten())
    assert torch.equal(net.state_dict()["features.0.bias"], tv_state["features.0.bias"])
    # a linear head that replaces only the last FC keeps torchvision's dropout after fc6
    trunk = make_trunk(net, spec, pooled=True, in_chans=3, keep_dropout=True)
    rates = [m.p for m in trunk.net.pre_logits.modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.5]


def test_a_missing_key_other_than_a_counter_is_still_an_error(tmp_path):
    spec = registry.get("shufflenet_v2")
    state = _without_counters(_torchvision_state("shufflenet_v2"))
    del state["conv5.1.running_var"]
    net = create_network(spec, pretrained=True)
    with pytest.raises(ValueError, match=r"1 missing keys \['conv5.1.running_var'\]"):
        load_into(net, spec, _save(state, tmp_path / "broken.pth"))


# --- heads the papers describe ------------------------------------------------------------

class ProposedHead(HeadConfig):
    """HeadConfig with the keys issue 25 adds to the schema (used until the schema has them)."""
    type: Literal["linear", "gap_mlp", "flatten_mlp", "conv_gap_mlp", "layers"] = "linear"
    layers: list[str | dict[str, int | float]] = []
    keep_dropout: bool = False


Head = HeadConfig if "layers" in HeadConfig.model_fields else ProposedHead
STUDY_C_VGG16_FINE_TUNED = ["gap", "batchnorm", {"dropout": 0.23}, {"dense": 510}, "relu",
                            "batchnorm", {"dropout": 0.3}]


def _kinds(head: nn.Module) -> list[str]:
    return [type(m).__name__ for m in head]


def test_study_c_fine_tuned_vgg16_head_in_the_papers_order():
    head = make_head(Head(type="layers", layers=STUDY_C_VGG16_FINE_TUNED), (512, 7, 7), 2)
    assert _kinds(head) == ["AdaptiveAvgPool2d", "Flatten", "BatchNorm1d", "Dropout", "Linear",
                            "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.23, 0.3]
    assert head[4].out_features == 510 and head[-1].in_features == 510
    head.eval()
    assert head(torch.randn(3, 512, 7, 7)).shape == (3, 2)
    pool, rest = split_pooling(head)  # a frozen base's features can still be cached pooled
    assert len(pool) == 2 and _kinds(rest)[0] == "BatchNorm1d"


def test_the_input_convolution_goes_in_front_of_the_base():
    """Conv2D(3x3, 'same') before the VGG16 base: same size out, three channels for the base."""
    conv = make_input_conv(3, kernel=3)
    assert conv(torch.randn(2, 3, 40, 40)).shape == (2, 3, 40, 40)
    assert _kinds(conv) == ["Conv2d"]  # Keras' Conv2D: no activation unless named
    with pytest.raises(ValueError, match="odd kernel"):
        make_input_conv(3, kernel=4)


def test_layers_heads_express_the_other_studies_heads():
    flatten = make_head(Head(type="layers", layers=["flatten", {"dense": 8}, "relu",
                                                    {"dropout": 0.1}, "batchnorm"]), (4, 3, 3), 2)
    assert _kinds(flatten) == ["CheckedFlatten", "Linear", "ReLU", "Dropout", "BatchNorm1d",
                               "Linear"]
    assert flatten[1].in_features == 36
    conv = make_head(Head(type="layers", layers=[{"conv": 6, "kernel": 3}, "batchnorm", "relu",
                                                 "gap"]), (4, 5, 5), 3)
    assert _kinds(conv) == ["Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Flatten",
                            "Linear"]


@pytest.mark.parametrize("layers, message", [
    (["pool"], r"layers\[0\]: unknown layer 'pool'"),
    (["dropout"], r"write \{dropout: VALUE\}"),
    ([{"dense": 0}], r"layers\[0\]\.dense: a positive whole number"),
    ([{"dropout": 1.5}], r"layers\[0\]\.dropout: a rate in \[0, 1\)"),
    ([{"conv": 4, "kernel": 2}], r"layers\[0\]\.kernel: an odd"),
    ([{"dense": 4, "dropout": 0.1}], r"layers\[0\]: one of"),
    ([], "non-empty"),
])
def test_bad_layers_are_named(layers, message):
    with pytest.raises(ValueError, match=message):
        parse_layers(layers)


def test_layers_that_do_not_fit_their_input_are_named():
    with pytest.raises(ValueError, match=r"layers\[0\] \(dense\) needs a vector.*put gap"):
        make_head(Head(type="layers", layers=[{"dense": 4}]), (8, 2, 2), 2)
    with pytest.raises(ValueError, match=r"layers\[1\] \(gap\) needs a feature map"):
        make_head(Head(type="layers", layers=["gap", "gap"]), (8, 2, 2), 2)
    with pytest.raises(ValueError, match="end on a feature map"):
        make_head(Head(type="layers", layers=["batchnorm"]), (8, 2, 2), 2)


@pytest.mark.parametrize("name, rate", [("googlenet", 0.2), ("mobilenet_v2", 0.2), ("vgg16", 0.5),
                                        ("resnet18", 0.0), ("shufflenet_v2", 0.0)])
def test_keep_dropout_keeps_torchvisions_rate_before_the_last_fc(name, rate):
    spec = registry.get(name)
    head = make_head(Head(type="linear", keep_dropout=True), (16,), 4, spec=spec)
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == ([rate] if rate else [])
    with pytest.raises(ValueError, match="either dropout or keep_dropout"):
        make_head(Head(type="linear", keep_dropout=True, dropout=0.1), (16,), 4, spec=spec)
    with pytest.raises(ValueError, match="head type linear"):
        make_head(Head(type="gap_mlp", keep_dropout=True), (16, 2, 2), 4, spec=spec)


def test_study_b_heads_keep_torchvisions_classifier_dropout():
    """Study B replaced only the last FC: each model keeps the dropout torchvision puts before it."""
    suite = load_suite("study_b")
    for model in suite.models:
        spec = registry.get(model.name)
        assert model.head.type == "linear"
        if getattr(model.head, "keep_dropout", False):
            continue
        assert model.head.dropout == (spec.classifier_dropout[-1] if spec.classifier_dropout
                                      else 0.0), model.display


# --- the study suites ---------------------------------------------------------------------

def test_the_study_suites_and_their_paper_split_variants_are_there():
    assert STUDIES == ["study_a", "study_a_paper_split", "study_b", "study_b_paper_split",
                       "study_c", "study_c_kfold", "study_d"]


@pytest.mark.parametrize("name", STUDIES)
def test_study_suite_loads_and_dry_runs(name, capsys):
    from mribench.cli.main import main

    suite = load_suite(name)
    assert main(["suite", name, "--dry-run", "--json", "--no-estimate"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["rows"] if isinstance(out, dict) else out
    cells = {(r["model"], r["strategy"]) for r in rows}
    assert len(rows) >= len(cells) > 0
    for p in suite.published:  # every published figure has cells to stand beside
        assert any(p.model in (m.display, m.name) and p.strategy in (s.display, s.name)
                   for m in suite.models for s in suite.strategies
                   if (m.display, s.display) in cells), (p.model, p.strategy)


# metrics a cell logs outside metrics.compute, by name (checked against the cell's source)
CELL_LEVEL = ("test_loss", "seconds_per_epoch", "first_epoch_seconds", "wall_seconds",
              "best_epoch", "epochs_run", "test_best_epoch_accuracy_peeking",
              "test_last_epoch_accuracy")
PEEKING = ("test_best_epoch_accuracy_peeking", "test_last_epoch_accuracy")


def _compute_keys(classes: list[str]) -> set[str]:
    """The names metrics.compute returns for these classes: its own list when it has one, else
    one call on images of every class (so each per-class and AUC key appears)."""
    listed = getattr(metrics, "metric_names", None)
    if listed is not None:
        return set(listed(classes))
    k = len(classes)
    y = np.arange(3 * k) % k
    probs = np.full((3 * k, k), 0.2 / (k - 1))
    probs[np.arange(3 * k), y] = 0.8
    probs[0] = probs[0][::-1].copy()  # one mistake, so no score is degenerate
    return set(metrics.compute(y, probs, classes))


def logged_metrics(suite, model, strategy) -> set[str]:
    """The metric names the cells of (model, strategy) log, on the suite's datasets."""
    from mribench.data.registry import get as dataset

    # the cell recipe and its scoring step (run/scoring.py) are where cell-level names are logged
    source = inspect.getsource(cell_module) + inspect.getsource(scoring_module)
    cell_level = {n for n in CELL_LEVEL if f'"{n}"' in source}
    if not suite.training_for(model).peek_test:
        cell_level -= set(PEEKING)
    names = set(cell_level)
    for ds in suite.datasets:
        prefixes = ["test", *(["test_clean"] if ds.dedup != "none" else [])]
        names |= {f"{p}_{k}" for p in prefixes for k in _compute_keys(dataset(ds.name).classes)}
    return names


@pytest.mark.parametrize("name", STUDIES)
def test_every_published_metric_is_one_the_cells_log(name):
    suite = load_suite(name)
    assert suite.published
    for p in suite.published:
        for model in suite.models:
            for strategy in suite.strategies:
                if p.model in (model.display, model.name) and \
                        p.strategy in (strategy.display, strategy.name):
                    unknown = sorted(set(p.values) - logged_metrics(suite, model, strategy))
                    assert not unknown, f"{name}: {p.model}/{p.strategy} publishes {unknown}, " \
                                        "which no cell logs"


def test_the_logged_names_are_real():
    """The check above is not vacuous: the names it accepts include what the studies compare."""
    suite = load_suite("study_b")
    names = logged_metrics(suite, suite.models[0], suite.strategies[0])
    assert {"test_kappa", "test_loss", "test_precision_glioma", "test_f1_notumor",
            "test_best_epoch_accuracy_peeking", "seconds_per_epoch"} <= names
    assert "test_precision_glioma_tumor" not in names  # canonical labels, not folder names
    binary = load_suite("study_c")
    assert {"test_roc_auc", "test_recall_yes"} <= logged_metrics(binary, binary.models[0],
                                                                 binary.strategies[0])


@pytest.mark.parametrize("study", ["study_a", "study_b"])
def test_paper_split_variant_differs_only_in_the_split(study):
    base = yaml.safe_load((SUITES / f"{study}.yaml").read_text())
    variant = yaml.safe_load((SUITES / f"{study}_paper_split.yaml").read_text())
    assert variant["split"] == {**base["split"], "groups": "none"}
    assert base["split"].get("groups", "near") == "near"
    assert variant["experiment"] != base["experiment"]
    assert variant["name"] == f"{study}_paper_split"
    same = set(base) - {"name", "description", "experiment", "split", "deviations"}
    assert {k: variant[k] for k in same} == {k: base[k] for k in same}
    topics = {d["topic"]: d for d in base["deviations"]}
    changed = [d["topic"] for d in variant["deviations"] if topics.get(d["topic"]) != d]
    assert changed == ["duplicates across the split"]
    assert [d["topic"] for d in variant["deviations"]] == list(topics)


def test_deviations_say_what_the_suites_do():
    """The reviewer's findings: no deviation claims a leak the suite does not have, and the
    published metrics the papers give are in published, not declared missing."""
    for name in ("study_a", "study_b"):
        dup = next(d for d in load_suite(name).deviations if d.topic == "duplicates across the split")
        assert "kept on one side" in dup.ours and "no test image has a copy" in dup.ours
    a = load_suite("study_a")
    assert all({"test_accuracy", "test_kappa", "test_loss"} <= set(p.values) for p in a.published)
    d = next(x for x in load_suite("study_d").deviations if "duplicates" in x.topic)
    assert "495" in d.ours and "216" in d.ours and "near copy" in d.ours
    c = load_suite("study_c")
    assert all("test_recall_yes" in p.values for p in c.published)
    assert next(m for m in c.models if m.name == "small_cnn").head.type == "flatten_mlp"


def test_audit_numbers_in_the_deviations_match_the_data(data_dir, tmp_path, capsys, monkeypatch):
    """Study D's leak and Study A's duplicate groups as the audit counts them on the real set."""
    from mribench.cli.main import main

    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["data", "audit", "brain-tumor-mri-7023", "--data-dir", str(data_dir),
                 "--cache-dir", str(tmp_path / "cache"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["kind"]: r for r in (out["rows"] if isinstance(out, dict) else out)}
    near, exact = rows["near"], rows["exact"]
    d = next(x for x in load_suite("study_d").deviations if "duplicates" in x.topic)
    assert f"{near['test_files_leaked']} test images" in d.ours
    assert f"{exact['test_files_leaked']} of them byte-identical" in d.ours
    a = next(x for x in load_suite("study_a").deviations if "duplicates" in x.topic)
    assert f"{near['groups']} near-duplicate groups" in a.ours

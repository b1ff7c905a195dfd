"""The mCE reference of a suite with `axes:`: each configuration is normalised by the reference
model and strategy at its own axis values (the same training size), not by whichever of them
comes first."""
from __future__ import annotations

import pytest

from mribench.report.robustness import Robustness, _table


def test_each_axis_value_has_its_own_reference():
    accuracy = {"linear_probe [n=10]": 0.5, "linear_probe [n=all]": 0.8,
                "knn [n=10]": 0.4, "knn [n=all]": 0.7}
    out = Robustness("clean", ["noise"], [1])
    by_config = {}
    for name, acc in accuracy.items():
        strategy, axes = name.split(" [")[0], name.split("[")[1].rstrip("]")
        out.curves += [{"config": name, "artefact": "noise", "severity": 0, "mean": acc + 0.1},
                       {"config": name, "artefact": "noise", "severity": 1, "mean": acc,
                        "ci95": [acc - 0.02, acc + 0.02]}]
        by_config[name] = {"dataset": "d", "axes": axes,
                           "row": {"model": "m", "strategy": strategy}}
    table = {r["config"]: r for r in _table(out, by_config, {"model": "m",
                                                             "strategy": "linear_probe"})}
    assert table["linear_probe [n=all]"]["reference"] == "linear_probe [n=all]"
    assert table["linear_probe [n=all]"]["mce"] == pytest.approx(1.0)  # itself
    assert table["knn [n=all]"]["reference"] == "linear_probe [n=all]"
    assert table["knn [n=all]"]["mce"] == pytest.approx(0.3 / 0.2)
    assert table["knn [n=10]"]["mce"] == pytest.approx(0.6 / 0.5)


def _curve(config, clean, corrupted, half_width):
    return [{"config": config, "artefact": "bias_field", "severity": 0, "mean": clean},
            *({"config": config, "artefact": "bias_field", "severity": k, "mean": acc,
               "ci95": [acc - half_width, acc + half_width]} for k, acc in enumerate(corrupted, 1))]


def test_relative_mce_leaves_out_an_artefact_whose_reference_drop_is_noise():
    """The reference loses about one image in 200 under the artefact: its drop is inside the
    interval, so a relative CE would be a ratio of noise (here it would be -2: the other model
    gains a little). Left out, and the row says over how many artefacts the mean ran."""
    out = Robustness("clean", ["bias_field"], [1, 2])
    out.curves = (_curve("frozen", 0.484, [0.480, 0.479], 0.06)
                  + _curve("full", 0.432, [0.440, 0.444], 0.06))
    by_config = {n: {"dataset": "d", "axes": None, "row": {"model": "m", "strategy": n}}
                 for n in ("frozen", "full")}
    table = {r["config"]: r for r in _table(out, by_config, {"model": "m", "strategy": "frozen"})}
    assert "relative_mce" not in table["full"] and "mce" in table["full"]
    # the same shapes with a drop the intervals resolve are kept
    out.curves = (_curve("frozen", 0.484, [0.380, 0.300], 0.06)
                  + _curve("full", 0.432, [0.300, 0.200], 0.06))
    table = {r["config"]: r for r in _table(out, by_config, {"model": "m", "strategy": "frozen"})}
    assert table["full"]["relative_mce"] == pytest.approx((0.132 + 0.232) / (0.104 + 0.184))
    assert table["full"]["relative_mce_artefacts"] == 1

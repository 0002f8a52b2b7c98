"""The diagnosis script's variant parsing and the selection check's rank correlations."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from tests.benchmarks.bench_helpers import load_script

diagnose = load_script("diagnose")
selection = load_script("selection")


def test_variant_parsing() -> None:
    assert diagnose.parse_variant("paper:") == ("paper", [])
    assert diagnose.parse_variant("u:rbae.segmentation=pixel_unet,train.lr=0.001") == (
        "u", ["rbae.segmentation=pixel_unet", "train.lr=0.001"])
    assert diagnose.parse_variant("w:rbae.widths=[16,32,64],seed=1") == ("w", ["rbae.widths=[16,32,64]", "seed=1"])
    with pytest.raises(SystemExit, match="NAME:key=value"):
        diagnose.parse_variant(":a=b")


def test_rank_correlation_per_surface_and_level() -> None:
    runs = pd.DataFrame({
        "surface": ["a"] * 4 + ["b"] * 4,
        "syn_image": [0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4],
        "test_image": [0.5, 0.6, 0.7, 0.8, 0.8, 0.7, 0.6, 0.5],
        "syn_pixel": [0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4],
        "test_pixel": [0.5, 0.6, 0.7, 0.8] + [None] * 4,  # surface b has no masks
        "perlin_image": [0.4, 0.3, 0.2, 0.1, 0.1, 0.2, 0.3, 0.4],  # a second synthetic set
        "perlin_pixel": [0.4, 0.3, 0.2, 0.1, 0.1, 0.2, 0.3, 0.4],
        "test_aupro": [0.1] * 8,  # no *_image beside it: not a yardstick
    })
    assert selection.yardsticks(runs) == ["syn", "perlin"]
    table = selection.rank_correlations(runs).set_index(["surface", "yardstick", "level"])
    assert table.loc[("a", "syn", "image"), "spearman_rho"] == pytest.approx(1.0)
    assert table.loc[("a", "perlin", "image"), "spearman_rho"] == pytest.approx(-1.0)
    assert table.loc[("b", "syn", "image"), "spearman_rho"] == pytest.approx(-1.0)
    assert table.loc[("b", "syn", "pixel"), "runs"] == 0 and math.isnan(table.loc[("b", "syn", "pixel"), "spearman_rho"])

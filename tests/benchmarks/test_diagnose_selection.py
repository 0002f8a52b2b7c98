"""The diagnosis script's variant parsing and the selection check's rank correlations and exposure check."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from tests.benchmarks.bench_helpers import REPO, load_script

from texinspect.config import load_config
from texinspect.models import family_module
from texinspect.models.artifact import ModelCard, load_card, save_detector
from texinspect.models.base import Detector
from texinspect.training.validation import held_out_normals

common = load_script("common")
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


class _BrightnessMeter(Detector):
    """Flags images by their mean brightness (``sign`` -1: by their darkness): exposure_rho's worst case."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.sign = sign

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.sign * images.mean(dim=(1, 2, 3))[:, None, None].expand(-1, *images.shape[2:])


def test_exposure_rho_finds_a_score_that_follows_brightness(bench_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``selection.py --models`` writes exposure_rho (issue 17 round 6): no labels, held-out normals relit."""
    config = load_config(REPO / "params.yaml", {"data.root": str(bench_data), "data.image_size": 64,
                                                "synthesis.texture_pool": ""})
    card = ModelCard(family="rbae", config={}, image_size=64, channels=3, score_smoothing=0.0)
    for sign in (1.0, -1.0):
        monkeypatch.setattr(selection, "load_detector", lambda _dir, sign=sign: (_BrightnessMeter(sign), card))
        assert sign * selection.exposure_rho(Path("unused"), config) > 0.95


def test_models_mode_skips_a_folder_it_cannot_load_and_keeps_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "good"
    measured = {"model": str(good), "surface": "s", "syn_image": 0.9, "syn_pixel": 0.8, "test_image": 0.7, "test_pixel": 0.6}
    real = selection.measure_model
    monkeypatch.setattr(selection, "measure_model", lambda d, sets, args: measured if d == good else real(d, sets, args))
    csv = tmp_path / "runs.csv"
    runs = selection.main(["--models", str(tmp_path / "not_a_model"), str(good), "--yardstick", "syn:", "--csv", str(csv)])
    assert runs == 0
    written = pd.read_csv(csv)
    assert list(written["model"]) == [str(good)]  # the unloadable folder was skipped, not fatal
    with pytest.raises(SystemExit):
        selection.main(["--models", str(good)])  # a set to measure on is required


def test_derived_model_takes_eval_overrides(bench_data: Path, tmp_path: Path) -> None:
    """``derive_model`` (diagnose.py --rescore, rescorings): an ``eval.score_smoothing`` override is the
    derived card's smoothing and its calibration's. It used to be dropped: the card kept the base
    model's smoothing and the thresholds were calibrated with it (issue 17 round 7)."""
    config = load_config(REPO / "params.yaml", {"model": "aessim", "data.root": str(bench_data), "data.image_size": 64,
                                                "synthesis.texture_pool": "", "device": "cpu"}, "smoke")
    assert config.eval.score_smoothing == 4.0
    torch.manual_seed(0)
    detector = family_module("aessim").build(config).eval()
    base = save_detector(detector, ModelCard(family="aessim", config=config.to_dict(), image_size=64, channels=3,
                                             score_smoothing=4.0), tmp_path / "base")
    derived = common.derive_model(base, ["eval.score_smoothing=0.0"], tmp_path / "derived", config)
    card = load_card(derived)
    assert card.score_smoothing == 0.0 and card.resolved_config().eval.score_smoothing == 0.0
    normals = held_out_normals(config)
    images = torch.stack([normals[i]["image"] for i in range(len(normals))])
    with torch.no_grad():
        raw, smoothed = (detector.score(images, s)[1] for s in (0.0, 4.0))
    assert card.normal_score_mean == pytest.approx(float(raw.mean()), rel=1e-4)
    assert abs(float(raw.mean()) - float(smoothed.mean())) > 1e-3  # the two smoothings are told apart

"""Smoke training end to end: loss falls, phase 2 keeps encoder and bank, k-means bank size, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from texinspect.cli import main as cli_main
from texinspect.errors import ConfigError, ModelError
from texinspect.models.artifact import load_detector
from texinspect.models.fmrnet import build, build_memory_bank, train
from texinspect.models.fmrnet.memory_bank import load_memory_bank
from texinspect.models.fmrnet.network import FMRNet


@pytest.fixture(scope="module")
def trained(sample_root: Path, make_config, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("fmrnet_run")
    cfg = make_config(sample_root)
    train(cfg, out, resume=False)
    return out, cfg


def _encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(("encoder.", "to_latent."))}


def test_smoke_training_loss_falls_and_the_artifact_works(trained) -> None:
    out, cfg = trained
    summary = json.loads((out / "train_summary.json").read_text())
    rec = [row["rec"] for row in summary["phases"]["phase1"]["history"]]
    assert len(rec) >= 4
    assert sum(rec[-2:]) / 2 < sum(rec[:2]) / 2, f"phase-1 reconstruction loss did not fall: {rec}"
    assert summary["phases"]["phase1"]["steps"] == cfg.train.max_steps_phase1
    assert summary["phases"]["phase2"]["steps"] == cfg.train.max_steps_phase2
    detector, card = load_detector(out / "model")
    assert isinstance(detector, FMRNet) and card.family == "fmrnet"
    assert detector.uses_memory and torch.isfinite(detector.patch_threshold)
    assert card.threshold is not None and card.pixel_threshold is not None
    images = torch.rand(2, 3, 64, 64)
    maps = detector.anomaly_map(images)
    assert maps.shape == (2, 64, 64) and bool(torch.isfinite(maps).all())
    res = detector.multilevel_map(images)  # the calibrated patch threshold
    assert res.patch_scores.shape == (2, 2, 2)


def test_phase2_leaves_encoder_and_memory_bank_unchanged(trained) -> None:
    out, _ = trained
    p1 = torch.load(out / "checkpoints" / "phase1_end.pt", weights_only=True)["modules"]["generator"]
    p2 = torch.load(out / "checkpoints" / "phase2_end.pt", weights_only=True)["modules"]["generator"]
    enc1, enc2 = _encoder_state(p1), _encoder_state(p2)
    assert any("running_mean" in k for k in enc1)  # BatchNorm statistics are part of the check
    for key, value in enc1.items():
        torch.testing.assert_close(enc2[key], value, rtol=0, atol=0, msg=f"phase 2 changed {key}")
    bank = load_memory_bank(out / "memory_bank.pt")
    torch.testing.assert_close(p2["memory"], bank["memory"], rtol=0, atol=0)
    assert bool(p2["memory_ready"])
    # ... while phase 2 did train the decoder and the addressing network
    assert not torch.equal(p1["up3.0.weight"], p2["up3.0.weight"])
    assert not torch.equal(p1["addressing.net.0.weight"], p2["addressing.net.0.weight"])


def test_kmeans_bank_has_the_configured_size(trained, tmp_path: Path) -> None:
    out, cfg = trained
    bank = load_memory_bank(out / "memory_bank.pt", cfg)
    assert tuple(bank["memory"].shape) == (cfg.fmrnet.memory_size, cfg.fmrnet.latent_dim)
    assert bank["n_codes"] >= cfg.fmrnet.memory_size
    assert (
        len({tuple(row.tolist()) for row in bank["memory"]}) == cfg.fmrnet.memory_size
    )  # distinct centroids
    # a different size from the same phase-1 checkpoint, through the CLI
    target = tmp_path / "bank8.pt"
    rc = cli_main(
        [
            "memory-bank",
            "--checkpoint",
            str(out),
            "--out",
            str(target),
            "--profile",
            "smoke",
            "--set",
            f"data.root={cfg.data.root}",
            "--set",
            "model=fmrnet",
            "--set",
            "fmrnet.memory_size=8",
            "--set",
            "device=cpu",
            "--config",
            str(Path(__file__).resolve().parents[3] / "params.yaml"),
        ]
    )
    assert rc == 0
    assert tuple(torch.load(target, weights_only=True)["memory"].shape) == (8, cfg.fmrnet.latent_dim)
    too_big = cfg.with_overrides({"fmrnet.memory_size": 10_000})
    with pytest.raises(ConfigError, match="fmrnet.memory_size"):
        build_memory_bank(too_big, out, tmp_path / "x.pt")
    with pytest.raises(ModelError, match="phase-1 checkpoint"):
        build_memory_bank(cfg, tmp_path, tmp_path / "y.pt")


def test_patch_scores_command(trained, sample_root: Path, tmp_path: Path) -> None:
    out, _ = trained
    rc = cli_main(
        [
            "patch-scores",
            "--model",
            str(out / "model"),
            "--data",
            str(sample_root),
            "--out",
            str(tmp_path),
            "--multilevel",
        ]
    )
    assert rc == 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "patch_scores.csv")
    assert len(table) == 4 + 3 * 2 and (table["patches"] == 4).all()
    assert any((tmp_path / "maps").rglob("*.npy")) and any((tmp_path / "patches").rglob("*.npy"))


@pytest.mark.parametrize(
    ("overrides", "has_addressing", "has_gfrm"),
    [
        ({"fmrnet.two_phase": False}, True, True),
        ({"fmrnet.use_cmfm": False}, False, True),
        ({"fmrnet.use_gfrm": False}, True, False),
    ],
)
def test_ablations_train(
    sample_root: Path, make_config, tmp_path: Path, overrides: dict, has_addressing: bool, has_gfrm: bool
) -> None:
    cfg = make_config(sample_root, {"train.max_steps_phase1": 3, "train.max_steps_phase2": 3, **overrides})
    model_dir = train(cfg, tmp_path, resume=False)
    detector, _ = load_detector(model_dir)
    assert (detector.addressing is not None) == has_addressing
    assert (len(detector.gfrms) == 2) == has_gfrm
    assert detector.anomaly_map(torch.rand(1, 3, 64, 64)).shape == (1, 64, 64)
    assert build(cfg).state_dict().keys() == detector.state_dict().keys()


def test_image_score_is_the_largest_patch_memory_distance(trained, sample_root: Path) -> None:
    """Default rule (paper's patch-level detection): score = max window distance; thresholds use it."""
    from texinspect.calibration import calibrate
    from texinspect.data.datasets import ImageDataset
    from texinspect.data.layout import records_for_prediction
    from texinspect.models.base import MAP_SCORE_RULE
    from texinspect.models.fmrnet.network import PATCH_SCORE_RULE
    from texinspect.prediction import score_images
    from texinspect.scoring import image_scores

    out, cfg = trained
    detector, card = load_detector(out / "model")
    assert card.score_rule == PATCH_SCORE_RULE == detector.image_score_rule
    images = torch.rand(3, 3, 64, 64)
    maps, scores = score_images(detector, card, images)
    expected = detector.patch_scores(images).flatten(1).amax(dim=1)
    np_expected = expected.numpy()
    assert scores.shape == (3,) and (abs(scores - np_expected) < 1e-6).all()
    # one encoder pass gives both: the map is anomaly_map's
    assert (abs(maps - detector.anomaly_map(images).numpy()) < 1e-6).all()
    # calibration's k-sigma threshold is over the same rule's scores of normal images
    normals = ImageDataset([r for r in records_for_prediction(sample_root) if r.label == 0], 64, 3)
    stats = calibrate(detector, normals, cfg.eval, "cpu")
    normal = torch.stack([normals[i]["image"] for i in range(len(normals))])
    s = detector.patch_scores(normal).flatten(1).amax(dim=1).double()
    assert stats["normal_score_mean"] == pytest.approx(float(s.mean()), rel=1e-5)
    # the map rule, by config, is the shared max of the smoothed map
    detector.cfg.image_score = "map"
    assert detector.image_score_rule == MAP_SCORE_RULE
    m = torch.from_numpy(maps)
    assert torch.allclose(detector.image_score(images, m, 4.0), image_scores(m, 4.0))


def test_too_large_memory_bank_is_refused_before_phase1(sample_root: Path, make_config, tmp_path: Path) -> None:
    """k-means needs L codes: the run stops before spending phase 1's minutes, and says which key."""
    cfg = make_config(sample_root, {"fmrnet.memory_size": 10_000})
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"fmrnet.memory_size=10000 needs .* window\(s\)"):
        train(cfg, out)
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").rglob("*.pt"))
    capped = make_config(sample_root, {"fmrnet.memory_size": 12, "fmrnet.memory_max_codes": 10})
    with pytest.raises(ConfigError, match="memory_max_codes=10 keeps 10"):
        train(capped, tmp_path / "run2")


def test_pixel_unet_extension_trains_in_phase2_and_replaces_the_multimodal_map(
    sample_root: Path, make_config, tmp_path: Path
) -> None:
    """fmrnet.segmentation=pixel_unet (issue 17): the segmenter learns in phase 2 beside the decoder
    (encoder frozen), is saved in the artifact, and the pixel map is its probability on the stitched
    reconstruction (then the soft multilevel weighting, as for the paper's map)."""
    cfg = make_config(
        sample_root,
        {"train.max_steps_phase1": 4, "train.max_steps_phase2": 6, "fmrnet.segmentation": "pixel_unet",
         "fmrnet.patch_weight_power": 1.0, "fmrnet.lr_schedule": "cosine", "fmrnet.warmup_steps": 2},
    )
    model_dir = train(cfg, tmp_path, resume=False)
    p1 = torch.load(tmp_path / "checkpoints" / "phase1_end.pt", weights_only=True)["modules"]["generator"]
    p2 = torch.load(tmp_path / "checkpoints" / "phase2_end.pt", weights_only=True)["modules"]["generator"]
    assert not torch.equal(p1["segmenter.head.weight"], p2["segmenter.head.weight"])
    for key, value in _encoder_state(p1).items():
        torch.testing.assert_close(p2[key], value, rtol=0, atol=0, msg=f"phase 2 changed {key}")
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert "seg" in summary["phases"]["phase2"]["history"][0]
    detector, _ = load_detector(model_dir)
    assert isinstance(detector, FMRNet) and detector.segmenter is not None
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        recs = detector.reconstruct(images)
        weights = detector.stitch_window_scores(detector.patch_scores(images), 64, 64)
        expected = torch.sigmoid(detector.segment_logits(images, recs))[:, 0] * weights
    torch.testing.assert_close(detector.anomaly_map(images), expected)


def test_pixel_unet_needs_patches_its_levels_divide(sample_root: Path, make_config) -> None:
    cfg = make_config(sample_root, {"fmrnet.segmentation": "pixel_unet", "fmrnet.segmenter_widths": [4, 8, 8, 8, 8, 8, 8]})
    with pytest.raises(ConfigError, match="fmrnet.segmenter_widths"):
        build(cfg)


def test_pixel_unet_at_half_resolution_gives_full_size_logits(sample_root: Path, make_config) -> None:
    cfg = make_config(sample_root, {"fmrnet.segmentation": "pixel_unet", "fmrnet.segmenter_widths": [4, 8],
                                    "fmrnet.segmenter_scale": 0.5})
    net = build(cfg).eval()
    images, recs = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        logits = net.segment_logits(images, recs)
        small = net.segmenter(torch.nn.functional.interpolate(
            torch.cat([images, recs], 1), scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True))
    assert logits.shape == (2, 1, 64, 64) and small.shape == (2, 1, 32, 32)
    torch.testing.assert_close(logits[:, :, ::2, ::2].mean(), small.mean(), atol=0.05, rtol=0)
    for bad in (0.0, 1.5, 0.3):
        with pytest.raises(ConfigError, match="fmrnet.segmenter"):
            build(make_config(sample_root, {"fmrnet.segmentation": "pixel_unet", "fmrnet.segmenter_scale": bad}))

"""Issue 17 round 5 extensions: the network's own work size (``fmrnet.train_size``) and the pixel
segmenter trained on whole stitched images (``fmrnet.segmenter_training=images``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from texinspect.errors import ConfigError
from texinspect.models.artifact import load_detector
from texinspect.models.fmrnet import build, train
from texinspect.models.fmrnet.memory_bank import load_memory_bank
from texinspect.models.fmrnet.network import FMRNet
from texinspect.training.common import prepare_training_data

# smoke profile: 32 px windows at stride 32; 128 px images, the network at 64 px (2 x 2 windows)
WORK = {"data.image_size": 128, "fmrnet.train_size": 64}
WHOLE = {**WORK, "fmrnet.segmentation": "pixel_unet", "fmrnet.segmenter_widths": [8, 16],
         "fmrnet.segmenter_training": "images", "fmrnet.patch_weight_power": 0.0, "fmrnet.image_score": "map"}


def _small(images: torch.Tensor, side: int) -> torch.Tensor:
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def _with_memory(net: FMRNet) -> FMRNet:
    torch.manual_seed(0)
    net.set_memory(F.normalize(torch.randn_like(net.memory), dim=1))
    net.patch_threshold.fill_(0.5)
    return net.eval()


def _held_pixel_auroc(cfg, checkpoint: Path) -> float:
    """Pixel AUROC of the checkpoint's segmenter on fixed synthetic defects (one per training
    image) at the work size."""
    net = build(cfg)
    net.load_state_dict(torch.load(checkpoint, weights_only=True)["modules"]["generator"])
    net.eval()
    synthetic = prepare_training_data(cfg, work_size=cfg.fmrnet.train_size).synthetic
    items = [synthetic[i] for i in range(len(synthetic))]
    defect = torch.stack([item["defect"] for item in items])
    mask = torch.stack([item["mask"] for item in items])
    with torch.no_grad():
        logits = net.segment_logits(defect, net.reconstruct(defect))
    return float(roc_auc_score(mask.flatten().numpy() > 0.5, logits.flatten().numpy()))


def test_work_size_resizes_inputs_and_maps_back(sample_root: Path, make_config) -> None:
    """Every image path runs at fmrnet.train_size and answers at the input's size: the same as
    resizing the image by hand, running the network, and resizing the map back."""
    net = _with_memory(build(make_config(sample_root, {**WORK, "fmrnet.patch_weight_power": 1.0})))
    paper = _with_memory(build(make_config(sample_root, {"fmrnet.patch_weight_power": 1.0})))
    paper.load_state_dict(net.state_dict())  # the same weights without the resizing
    images = torch.rand(2, 3, 128, 128)
    small = _small(images, 64)
    with torch.no_grad():
        expected = F.interpolate(paper.anomaly_map(small)[:, None], size=(128, 128), mode="bilinear",
                                 align_corners=False)[:, 0]
        torch.testing.assert_close(net.anomaly_map(images), expected)
        torch.testing.assert_close(net.patch_scores(images), paper.patch_scores(small))
        assert net.patch_scores(images).shape == (2, 2, 2)  # the windows of the 64 px image
        maps, scores = net.score(images, smoothing=0.0)
        torch.testing.assert_close(maps, expected)
        torch.testing.assert_close(scores, paper.patch_scores(small).flatten(1).amax(1))
        assert net.reconstruct(images).shape == (2, 3, 64, 64)
        stitched = net.stitch_window_scores(net.patch_scores(images), 128, 128)
        assert stitched.shape == (2, 128, 128)
        res = net.multilevel_map(images, patch_threshold=0.0)  # every window flagged: the full map
        torch.testing.assert_close(res.maps, expected)
        # an input already at the work size is not resized
        torch.testing.assert_close(net.anomaly_map(small), paper.anomaly_map(small))


def test_bad_work_size_and_segmenter_training_are_refused(sample_root: Path, make_config) -> None:
    with pytest.raises(ConfigError, match=r"fmrnet.train_size=16 is smaller than one window"):
        build(make_config(sample_root, {"fmrnet.train_size": 16}))
    with pytest.raises(ConfigError, match="segmenter_training=images .* needs fmrnet.segmentation=pixel_unet"):
        build(make_config(sample_root, {"fmrnet.segmenter_training": "images"}))
    with pytest.raises(ConfigError, match="fmrnet.segmenter_training"):
        make_config(sample_root, {"fmrnet.segmenter_training": "tiles"})


def test_segmenter_learns_on_whole_stitched_images_at_the_work_size(
    sample_root: Path, make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Phase 2 restores every window of each training image at the work size and the segmenter
    learns on the stitched whole image (its focal loss falls); the bank holds the work size's
    windows; the model answers 128 px images with 128 px maps and scores them by the map."""
    cfg = make_config(sample_root, {**WHOLE, "train.max_steps_phase1": 4, "train.max_steps_phase2": 120,
                                    "train.log_every": 1, "fmrnet.lr": 3e-3})
    seen: list[tuple[int, ...]] = []
    original = FMRNet.segment_logits

    def recording(self: FMRNet, images: torch.Tensor, recs: torch.Tensor) -> torch.Tensor:
        if self.training:
            seen.append(tuple(images.shape[1:]))
            assert recs.shape == images.shape  # the stitched reconstruction, not windows
        return original(self, images, recs)

    monkeypatch.setattr(FMRNet, "segment_logits", recording)
    model_dir = train(cfg, tmp_path, resume=False)
    assert seen and set(seen) == {(3, 64, 64)}, f"segmenter inputs in training: {set(seen)}"
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert "seg" in summary["phases"]["phase2"]["history"][0]
    # learns: its pixel AUROC on fixed synthetic defects, before phase 2 (phase 1's untouched
    # segmenter) and after it
    before, after = (_held_pixel_auroc(cfg, tmp_path / "checkpoints" / f"{phase}_end.pt") for phase in ("phase1", "phase2"))
    assert after > before + 0.1, f"segmenter pixel AUROC on fixed synthetic defects: {before:.3f} -> {after:.3f}"
    bank = load_memory_bank(tmp_path / "memory_bank.pt")
    n_train = summary["n_train"]
    assert bank["n_patches"] == 4 * n_train  # 2 x 2 windows per 64 px training image (128 px: 16)
    detector, card = load_detector(model_dir)
    assert isinstance(detector, FMRNet) and detector.image_score_rule == "max_of_gaussian_smoothed_map"
    images = torch.rand(2, 3, 128, 128)
    maps, scores = detector.score(images, smoothing=0.0)
    assert maps.shape == (2, 128, 128) and bool(torch.isfinite(maps).all())
    torch.testing.assert_close(scores, maps.flatten(1).amax(1))

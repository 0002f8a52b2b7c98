"""Issue 19: ``texinspect export --format onnx`` for both families, checked with ONNX Runtime.

Both families are smoke-trained once for this file (a few steps: export needs weights, not
accuracy). RB-AE is built like ``--profile cpu`` builds it: the ``pixel_unet`` segmenter and a
network size below the card's image size (maps resized up inside the graph). Tolerance:
|onnx - torch| <= 1e-4 + 1e-3 x |torch| for every output element.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort  # the onnx extra (pip install texinspect[onnx]); a missing one fails, not skips
import pytest
import torch

from texinspect.cli import main as texinspect_main
from texinspect.config import load_config
from texinspect.data.images import load_image
from texinspect.data.sample import make_sample_dataset
from texinspect.errors import ModelError
from texinspect.export import onnx_export
from texinspect.models import family_module
from texinspect.models.artifact import load_detector

REPO = Path(__file__).resolve().parents[2]
SIZE = 64
FAMILY_OVERRIDES = {
    "rbae": ["rbae.segmentation=pixel_unet", "rbae.train_size=32"],  # as --profile cpu: pixel_unet, maps resized
    # as --profile cpu: the whole-image segmenter at half the side; overlapping windows in chunks, as the paper's
    # stride; a network size below the card's image size
    "fmrnet": ["fmrnet.patch_stride=16", "fmrnet.inference_chunk=16", "fmrnet.segmentation=pixel_unet",
               "fmrnet.segmenter_training=images", "fmrnet.segmenter_scale=0.5", "fmrnet.train_size=48",
               "fmrnet.image_score=map"],
}


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(np.abs(a - b) <= onnx_export.ATOL + onnx_export.RTOL * np.abs(b)))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("onnx_models")
    data = root / "data"
    make_sample_dataset(data, n_train=24, n_test_good=2, n_test_defect_per_type=1, size=SIZE)
    out: dict[str, Any] = {"root": root, "images": sorted((data / "test").rglob("*.png"))[:5]}
    for family, extra in FAMILY_OVERRIDES.items():
        overrides = [f"model={family}", f"data.root={data}", "synthesis.texture_pool=", "train.max_steps_phase1=3",
                     "train.max_steps_phase2=3", "train.progress=false", "device=cpu", *extra]  # fmt: skip
        config = load_config(REPO / "params.yaml", overrides, profile="smoke")
        out[family] = family_module(family).train(config, root / family, resume=False)
    return out


def _batch(paths: list[Path], card: Any) -> torch.Tensor:
    return torch.stack([torch.as_tensor(load_image(p, card.image_size, card.channels)) for p in paths])


@pytest.mark.parametrize("family", sorted(FAMILY_OVERRIDES))
def test_onnx_runtime_gives_the_same_maps_as_pytorch(
    models: dict[str, Any], family: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert texinspect_main(["export", "--model", str(models[family]), "--out", str(tmp_path), "--format", "onnx"]) == 0
    assert "model.onnx" in capsys.readouterr().out
    detector, card = load_detector(models[family], "cpu")
    if family == "rbae":
        assert card.resolved_config().rbae.segmentation == "pixel_unet"
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for paths in (models["images"][:1], models["images"]):  # batch 1 and 5: the batch is dynamic
        images = _batch(paths, card)
        (got,) = session.run(["anomaly_map"], {"images": images.numpy()})
        with torch.inference_mode():
            want = detector.anomaly_map(images).float().numpy()
        assert got.shape == want.shape == (len(paths), card.image_size, card.image_size)
        assert _close(got, want), f"{family}: max |onnx - torch| {np.abs(got - want).max():.3g}"
        assert np.ptp(want) > 0  # a constant map would compare equal for the wrong reason
    meta = json.loads((tmp_path / onnx_export.META_FILE).read_text())
    assert meta["family"] == family and meta["image_size"] == card.image_size
    assert meta["tolerance"] == {"atol": 1e-4, "rtol": 1e-3, "checked_batch": 3}
    assert (tmp_path / onnx_export.EDGE_FILE).is_file() == (family == "fmrnet")


def test_fmrnet_edge_half_matches_the_torch_edge_encoder(models: dict[str, Any], tmp_path: Path) -> None:
    from texinspect.serving.edge import EdgeEncoder, feature_names

    onnx_export.export_onnx(models["fmrnet"], tmp_path)
    detector, card = load_detector(models["fmrnet"], "cpu")
    names = ["patch_scores", *feature_names(detector)]
    session = ort.InferenceSession(str(tmp_path / "edge.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == names
    images = _batch(models["images"], card)
    got = session.run(names, {"images": images.numpy()})
    with torch.inference_mode():
        want = [t.numpy() for t in EdgeEncoder(detector).eval()(images)]
    for name, a, b in zip(names, got, want, strict=True):
        assert a.shape == b.shape and _close(a, b), name
    meta = json.loads((tmp_path / onnx_export.META_FILE).read_text())
    assert meta["edge"]["patch_size"] == detector.cfg.patch_size


def test_export_fails_when_the_runtimes_disagree(
    models: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_export, "check_parity", _skewed(onnx_export.check_parity))
    with pytest.raises(ModelError, match="ONNX Runtime differs from PyTorch"):
        onnx_export.export_onnx(models["rbae"], tmp_path)


def _skewed(check: Any) -> Any:
    """check_parity on a module whose output is nudged by 1e-3 (as a wrong export would be)."""

    def run(module: torch.nn.Module, path: Path, images: torch.Tensor, outputs: list[str]) -> Any:
        class Nudged(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return module(x) + 1e-3

        return check(Nudged(), path, images, outputs)

    return run

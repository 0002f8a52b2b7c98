"""AE-SSIM baseline: window tiling is exact, the map is 1 - SSIM, training lowers the SSIM loss,
the artifact round-trips through ``predict``, and a resumed run continues where it stopped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from texinspect.config import Config, load_config
from texinspect.data.sample import make_sample_dataset
from texinspect.errors import ConfigError
from texinspect.models import family_module
from texinspect.models.aessim.network import AESSIMNet, patch_size_for
from texinspect.models.aessim.trainer import LR, TrainStep, random_windows
from texinspect.models.artifact import load_detector
from texinspect.prediction import predict
from texinspect.scoring import ssim_map
from texinspect.training.common import adam

PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("aessim_data") / "sample"
    make_sample_dataset(root, n_train=16, n_test_good=3, n_test_defect_per_type=2, size=64, seed=5)
    return root


def smoke_config(root: Path, *overrides: str) -> Config:
    return load_config(
        PARAMS,
        [f"data.root={root}", "device=cpu", "train.progress=false", "synthesis.texture_pool=", *overrides],
        profile="smoke",
    )


class _Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_window_tiling_reassembles_the_image_exactly() -> None:
    # with an identity "autoencoder" the fold/unfold average must give back the input, also
    # for a side that the windows do not tile (edge padding, then crop)
    for side in (64, 80):
        net = AESSIMNet(2, 64 if side == 64 else 80)
        net.patch, net.stride = 32, 12
        net.ae = _Identity()
        x = torch.rand(3, 2, side, side)
        torch.testing.assert_close(net.reconstruct(x), x)


def test_anomaly_map_is_one_minus_ssim_of_the_reconstruction() -> None:
    net = AESSIMNet(3, 64).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        amap = net.anomaly_map(x)
        expected = 1.0 - ssim_map(x, net.reconstruct(x), window=11)
    assert amap.shape == (2, 64, 64)
    torch.testing.assert_close(amap, expected)


def test_patch_size_rules() -> None:
    assert patch_size_for(256) == 128 and patch_size_for(64) == 64
    with pytest.raises(ConfigError, match="multiple of 16"):
        patch_size_for(72)


def test_random_windows_are_crops_of_their_image() -> None:
    images = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    gen = torch.Generator().manual_seed(0)
    windows = random_windows(images, 4, 3, gen)
    assert windows.shape == (6, 1, 4, 4)
    for i, win in enumerate(windows):
        src = images[i // 3, 0]
        found = False
        for flip in ([], [0], [1], [0, 1]):
            w = win[0].flip(flip) if flip else win[0]
            for oy in range(5):
                for ox in range(5):
                    found |= torch.equal(src[oy : oy + 4, ox : ox + 4], w)
        assert found, f"window {i} is not a (flipped) crop of image {i // 3}"


def test_train_step_learns_to_reconstruct_smooth_images() -> None:
    # four smooth sinusoidal surfaces; 1 - SSIM starts near 0.96 (sigmoid output ~0.5 everywhere)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    waves = [0.5 + 0.4 * torch.sin(2 * math.pi * (f * xx + g * yy)) for f, g in [(1, 0), (0, 1), (1, 1), (2, 1)]]
    images = torch.stack(waves)[:, None].repeat(1, 3, 1, 1)
    torch.manual_seed(0)
    net = AESSIMNet(3, 64)
    config = load_config(PARAMS, ["device=cpu", "data.image_size=64"])  # window = image: one per image
    step = TrainStep(net, adam(net.parameters(), LR, 0.0), config, torch.device("cpu"))
    losses = [step({"image": images})["ssim_loss"] for _ in range(25)]
    assert losses[-1] < losses[0] - 0.15, f"1 - SSIM went {losses[0]:.3f} -> {losses[-1]:.3f}"
    net.eval()  # BatchNorm running statistics must serve inference as well
    with torch.inference_mode():
        assert float(net.anomaly_map(images).mean()) < losses[0] - 0.15


@pytest.fixture(scope="module")
def trained(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("aessim_run")
    config = smoke_config(sample, "train.max_steps_phase1=20", "train.max_steps_phase2=20", "train.log_every=10")
    model_dir = family_module("aessim").train(config, out)
    return out, model_dir


def test_training_lowers_ssim_loss_and_writes_artifact(trained: tuple[Path, Path]) -> None:
    out, model_dir = trained
    summary = json.loads((out / "train_summary.json").read_text())
    rows = summary["history"]["train"]
    assert [row["step"] for row in rows] == [10.0, 20.0, 30.0, 40.0] and summary["phases"]["train"]["steps"] == 40
    assert rows[-1]["ssim_loss"] < rows[0]["ssim_loss"], f"SSIM loss did not fall: {rows[0]} -> {rows[-1]}"
    detector, card = load_detector(model_dir)
    assert card.family == "aessim" and isinstance(detector, AESSIMNet)
    assert card.threshold is not None and card.pixel_threshold is not None
    assert card.normal_score_std is not None and card.normal_score_std > 0


def test_predict_scores_the_test_split(trained: tuple[Path, Path], sample: Path, tmp_path: Path) -> None:
    _, model_dir = trained
    table = predict(model_dir, sample, tmp_path / "pred", device="cpu")
    assert len(table) == 3 + 2 * len({p.split("/")[1] for p in table["path"] if "/good/" not in p})
    amap = np.load(tmp_path / "pred" / "maps" / f"{table['path'][0]}.npy")
    assert amap.shape == (64, 64) and np.isfinite(amap).all()
    assert pd.api.types.is_float_dtype(table["score"]) and table["score"].nunique() > 1


def test_resume_continues_after_a_kill(sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from texinspect.models.aessim import trainer

    calls = {"n": 0}
    real_call = trainer.TrainStep.__call__

    def dying(self: trainer.TrainStep, batch: dict) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 8:  # killed between the checkpoints of steps 5 and 10
            raise KeyboardInterrupt
        return real_call(self, batch)

    config = smoke_config(sample, "train.max_steps_phase1=8", "train.max_steps_phase2=7", "train.log_every=5",
                          "train.checkpoint_every=5")
    monkeypatch.setattr(trainer.TrainStep, "__call__", dying)
    with pytest.raises(KeyboardInterrupt):
        family_module("aessim").train(config, tmp_path)
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 5
    monkeypatch.setattr(trainer.TrainStep, "__call__", real_call)
    family_module("aessim").train(config, tmp_path, resume=True)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert [row["step"] for row in summary["history"]["train"]] == [5.0, 10.0, 15.0]
    assert summary["phases"]["train"]["steps"] == 15 and calls["n"] == 8  # steps 6..15 ran after the resume


def test_ssim_loss_is_zero_for_a_perfect_reconstruction_and_grows_with_damage() -> None:
    from texinspect.models.aessim.losses import ssim_loss

    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert float(ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-5)
    assert 0.0 < float(ssim_loss(x, (x + noisy) / 2)) < float(ssim_loss(x, noisy))

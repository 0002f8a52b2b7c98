"""RB-AE training on a tiny procedural dataset: losses fall, phase 2 leaves the encoder alone,
the artifact restores the whole model, ``predict`` works with it, ablation switches train."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from texinspect.config import Config, load_config
from texinspect.data.sample import make_sample_dataset
from texinspect.models.artifact import load_detector
from texinspect.models.rbae.network import RBAENet
from texinspect.models.rbae.trainer import Phase1Step, Phase2Step, build_network
from texinspect.prediction import predict
from texinspect.training.common import adam

torch.set_num_threads(1)
PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rbae_data") / "sample"
    make_sample_dataset(root, n_train=16, n_test_good=3, n_test_defect_per_type=2, size=64, seed=3)
    return root


def smoke_config(root: Path, *overrides: str) -> Config:
    return load_config(
        PARAMS,
        [f"data.root={root}", "device=cpu", "train.progress=false", "synthesis.texture_pool=", *overrides],
        profile="smoke",
    )


@pytest.fixture(scope="module")
def trained(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Config]:
    out = tmp_path_factory.mktemp("rbae_run")
    config = smoke_config(
        sample,
        "train.max_steps_phase1=60",
        "train.max_steps_phase2=60",
        "train.log_every=10",
        "train.checkpoint_every=25",
    )
    from texinspect.models.rbae import train

    model_dir = train(config, out)
    return out, config if model_dir == out / "model" else pytest.fail(f"unexpected model dir {model_dir}")


def test_smoke_training_losses_fall(trained: tuple[Path, Config]) -> None:
    out, _ = trained
    summary = json.loads((out / "train_summary.json").read_text())
    for phase in ("phase1", "phase2"):
        rows = summary["history"][phase]
        assert len(rows) == 6 and rows[-1]["step"] == 60
        assert rows[-1]["loss"] < rows[0]["loss"], f"{phase}: loss did not fall: {rows[0]} -> {rows[-1]}"
    assert {"rec", "fea_rep", "seg"} <= set(summary["phases"]["phase2"]["last_losses"])
    assert summary["perceptual"].startswith("none")
    assert summary["reference_rule"].startswith("medoid") and summary["reference"].startswith("train/good/")
    assert summary["resumed_from"] == {"phase1": 0, "phase2": 0}


def test_phase2_leaves_encoder_unchanged(trained: tuple[Path, Config]) -> None:
    out, _ = trained
    end1 = torch.load(out / "checkpoints" / "phase1_end.pt", weights_only=True)["modules"]["net"]
    final = torch.load(out / "model" / "weights.pt", weights_only=True)
    enc_keys = [k for k in end1 if k.startswith("encoder.")]
    assert any(k.endswith("running_mean") for k in enc_keys)  # BatchNorm statistics are compared too
    for key in enc_keys:
        torch.testing.assert_close(final[key], end1[key], rtol=0, atol=0, msg=f"{key} changed in phase 2")
    dec_keys = [k for k in end1 if k.startswith("decoder.") and k.endswith("weight")]
    assert any(not torch.equal(final[k], end1[k]) for k in dec_keys)  # while the decoder did train


def _one_phase2_step(
    net: RBAENet, config: Config, params: list[torch.nn.Parameter]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """One eq. (17) step on a bright square; checks the logged terms and that the encoder and the
    reference buffers did not move. Returns the state before, after, and the defect images."""
    opt = adam(params, 1e-3, 0.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    io = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(4, 1, 64, 64)
    mask[:, :, 10:30, 20:40] = 1
    batch = {"image": io, "defect": io * (1 - mask) + mask * 0.9, "mask": mask, "has_defect": torch.ones(4)}
    values = Phase2Step(net, opt, config, None, torch.device("cpu"))(batch)
    assert {"rec", "fea_rep", "seg", "loss"} <= set(values)
    after = net.state_dict()
    for key, value in before.items():
        if key.startswith("encoder.") or key.startswith("reference_"):
            assert torch.equal(after[key], value), key
    return before, after, batch["defect"]


def test_phase2_step_touches_only_rbam_decoder_msfdm(sample: Path) -> None:
    config = smoke_config(sample, "train.channels_last=false")
    net = build_network(config)
    net.freeze_encoder()
    net.train()
    assert not net.encoder.training  # train() keeps a frozen encoder in eval mode
    net.set_reference(torch.rand(1, 3, 64, 64))
    params = list(net.rbams.parameters()) + list(net.decoder.parameters()) + list(net.msfdm.parameters())
    before, after, _ = _one_phase2_step(net, config, params)
    assert not torch.equal(after["msfdm.heads.0.net.0.weight"], before["msfdm.heads.0.net.0.weight"])
    assert not torch.equal(after["rbams.3.ffm.squeeze.0.weight"], before["rbams.3.ffm.squeeze.0.weight"])


def test_phase1_step_reports_eq14_terms(sample: Path) -> None:
    config = smoke_config(sample, "train.channels_last=false")
    net = build_network(config)
    opt = adam(list(net.encoder.parameters()) + list(net.decoder.parameters()), 1e-3, 0.0)
    io = torch.rand(2, 3, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, :16, :16] = 1
    values = Phase1Step(net, opt, config, None, torch.device("cpu"))(
        {"image": io, "defect": io * (1 - mask), "mask": mask, "has_defect": torch.ones(2)}
    )
    w = config.rbae.loss
    assert values["loss"] == pytest.approx(
        w.rec1 * values["rec"] + w.pixel_dis * values["pixel_dis"], rel=1e-5
    )


def test_artifact_restores_model_and_predict_works(
    trained: tuple[Path, Config], sample: Path, tmp_path: Path
) -> None:
    out, config = trained
    detector, card = load_detector(out / "model")
    assert isinstance(detector, RBAENet) and card.family == "rbae"
    assert bool(detector.reference_ready)
    with torch.no_grad():
        feats = detector.encoder(detector.reference_image)
    torch.testing.assert_close(detector.reference_feat5, feats[4])
    assert card.extra["perceptual"].startswith("none") and "synthetic_pixel_auroc" in card.extra
    assert card.threshold is not None and card.pixel_threshold is not None
    table = predict(out / "model", sample, tmp_path / "pred", device="cpu")
    n_test = len(list((sample / "test").rglob("*.png")))
    assert len(table) == n_test and np.isfinite(table["score"]).all()
    first = pd.read_csv(tmp_path / "pred" / "scores.csv")["path"].iloc[0]
    amap = np.load(tmp_path / "pred" / "maps" / f"{first}.npy")
    assert amap.shape == (config.data.image_size, config.data.image_size)


@pytest.mark.parametrize(
    "overrides",
    [
        ["rbae.use_rbam=false"],
        ["rbae.use_pixel_dis=false"],
        ["rbae.segmentation=pixel_gap"],
        ["rbae.segmentation=msfr"],
        ["rbae.segmentation=ssim", "rbae.perceptual=ssim"],
        ["rbae.train_size=32", "rbae.reference=train/good/000.png"],
        ["rbae.segmentation=pixel_unet", "train.lr_schedule=cosine", "train.warmup_steps=2"],
    ],
)
def test_ablation_switches_train(sample: Path, tmp_path: Path, overrides: list[str]) -> None:
    from texinspect.models.rbae import train

    config = smoke_config(sample, "train.max_steps_phase1=4", "train.max_steps_phase2=4", *overrides)
    model_dir = train(config, tmp_path)
    detector, card = load_detector(model_dir)
    assert detector.segmentation == config.rbae.segmentation
    assert detector.use_rbam == config.rbae.use_rbam and len(detector.rbams) == (
        3 if config.rbae.use_rbam else 0
    )
    assert (detector.msfdm is not None) == (config.rbae.segmentation == "msfdm")
    assert (detector.segmenter is not None) == (config.rbae.segmentation == "pixel_unet")
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["use_pixel_dis"] == config.rbae.use_pixel_dis
    assert ("pixel_dis" in summary["history"]["phase1"][0]) == config.rbae.use_pixel_dis
    if config.rbae.train_size:
        assert detector.size == 32 and summary["reference"].endswith("train/good/000.png")
    with torch.no_grad():
        assert detector.anomaly_map(torch.rand(1, 3, 64, 64)).shape == (1, 64, 64)


def test_pixel_unet_extension_trains_its_segmenter_in_phase2_and_gives_the_map(sample: Path) -> None:
    """rbae.segmentation=pixel_unet (issue 17): a U-Net on image + reconstruction, focal loss on the
    full-resolution mask, trained with the RBAMs and decoder; the encoder stays frozen."""
    config = smoke_config(sample, "train.channels_last=false", "rbae.segmentation=pixel_unet")
    net = build_network(config)
    assert net.msfdm is None and net.segmenter is not None
    net.freeze_encoder()
    net.set_reference(torch.rand(1, 3, 64, 64))
    from texinspect.models.rbae.trainer import _phase2_params

    before, after, x = _one_phase2_step(net, config, _phase2_params(net))
    assert not torch.equal(after["segmenter.head.weight"], before["segmenter.head.weight"])
    net.eval()
    with torch.no_grad():
        recon = net.reconstruct(x)[0]
        expected = torch.sigmoid(net.segmenter(torch.cat([x, recon], dim=1)))[:, 0]
        torch.testing.assert_close(net.anomaly_map(x), expected)


def test_unfrozen_encoder_extension_learns_in_phase2_and_keeps_reference_features_current(
    sample: Path, tmp_path: Path
) -> None:
    """rbae.freeze_encoder=false (issue 17): phase 2 trains the encoder too; the stored F_ref are
    the final encoder's features of the reference image, so inference stays consistent."""
    from texinspect.models.rbae import train

    config = smoke_config(
        sample, "train.max_steps_phase1=3", "train.max_steps_phase2=4", "rbae.freeze_encoder=false",
        "rbae.segmentation=pixel_unet",
    )
    model_dir = train(config, tmp_path)
    p1 = torch.load(tmp_path / "checkpoints" / "phase1_end.pt", weights_only=True)["modules"]["net"]
    detector, card = load_detector(model_dir)
    assert card.extra["freeze_encoder"] is False
    assert not torch.equal(p1["encoder.blocks.0.0.weight"], detector.state_dict()["encoder.blocks.0.0.weight"])
    with torch.no_grad():
        feats = detector.encoder(detector.reference_image)
    for layer in (3, 4, 5):
        torch.testing.assert_close(getattr(detector, f"reference_feat{layer}"), feats[layer - 1])

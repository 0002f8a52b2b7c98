"""The served RB-AE and FMR-Net (smoke-trained once for this file) against `texinspect predict`,
FMR-Net's patch-level modes, and the edge-cloud split: equal to full inference, in-process and
over HTTP, with the bytes a flagged image costs reported beside the encoded image's size."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from serving_helpers import REPO, RunningServer, b64, running_server

from texinspect.cli import main as texinspect_main
from texinspect.config import load_config
from texinspect.data.images import load_image
from texinspect.data.sample import make_sample_dataset
from texinspect.errors import ModelError
from texinspect.models import family_module
from texinspect.models.artifact import load_detector
from texinspect.serving.edge import CloudHalf, EdgeRunner, export_edge, split_request, upload_size
from texinspect.serving.encoding import png_to_map

FAMILIES = ("rbae", "fmrnet")
SIZE = 64  # the smoke profile's image size


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Sample data, both families smoke-trained (a few steps: serving needs weights, not accuracy),
    and `texinspect predict` run on the test split with each."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("serving_models")
    data = root / "data"
    make_sample_dataset(data, n_train=24, n_test_good=2, n_test_defect_per_type=1, size=SIZE)
    out: dict[str, Any] = {"root": root, "data": data, "images": sorted((data / "test").rglob("*.png"))}
    for family in FAMILIES:
        overrides = [
            f"model={family}",
            f"data.root={data}",
            "synthesis.texture_pool=",
            "train.max_steps_phase1=3",
            "train.max_steps_phase2=3",
            "train.progress=false",
            "device=cpu",
        ]
        config = load_config(REPO / "params.yaml", overrides, profile="smoke")
        model_dir = family_module(family).train(config, root / family, resume=False)
        pred = root / f"pred_{family}"
        assert (
            texinspect_main(
                [
                    "predict",
                    "--model",
                    str(model_dir),
                    "--data",
                    str(data),
                    "--out",
                    str(pred),
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
        out[family] = {
            "model": model_dir,
            "pred": pred,
            "table": pd.read_csv(pred / "scores.csv").set_index("path"),
        }
    return out


@pytest.fixture(scope="module")
def server(trained: dict[str, Any]) -> Any:
    models = [f"{f}={trained[f]['model']}" for f in FAMILIES]
    with running_server(models, trained["root"]) as srv:
        yield srv


def _rel(trained: dict[str, Any], path: Path) -> str:
    return path.relative_to(trained["data"]).as_posix()


@pytest.mark.parametrize("family", FAMILIES)
def test_v1_and_v2_equal_texinspect_predict(
    server: RunningServer, trained: dict[str, Any], family: str
) -> None:
    images, info = trained["images"], trained[family]
    table = info["table"]
    encoded = [b64(p.read_bytes()) for p in images]
    with server.client() as c:
        v1 = c.post(
            f"/v1/models/{family}:predict",
            json={
                "instances": [{"image_b64": e} for e in encoded],
                "parameters": {"return_map_values": True},
            },
        )
        v2 = c.post(
            f"/v2/models/{family}/infer",
            json={
                "inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(encoded)], "data": encoded}]
            },
        )
    assert v1.status_code == 200, v1.text
    assert v2.status_code == 200, v2.text
    preds = v1.json()["predictions"]
    out = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    for i, path in enumerate(images):
        rel = _rel(trained, path)
        assert preds[i]["score"] == pytest.approx(table.loc[rel, "score"], abs=1e-5, rel=1e-5)
        assert out["score"][i] == pytest.approx(table.loc[rel, "score"], abs=1e-5, rel=1e-5)
        assert preds[i]["is_defect"] == out["is_defect"][i] == bool(table.loc[rel, "is_defect"])
        ref = np.load(info["pred"] / "maps" / f"{rel}.npy")
        np.testing.assert_allclose(
            np.asarray(preds[i]["anomaly_map"], dtype=np.float32), ref, atol=1e-5, rtol=1e-4
        )


def test_fmrnet_fast_and_multilevel_modes(server: RunningServer, trained: dict[str, Any]) -> None:
    det, card = load_detector(trained["fmrnet"]["model"], "cpu")
    images = trained["images"]
    batch = torch.stack([torch.from_numpy(load_image(p, SIZE, 3)) for p in images])
    grids = det.patch_scores(batch).numpy()
    multi = det.multilevel_map(batch)
    encoded = [b64(p.read_bytes()) for p in images]
    inputs = [{"name": "image", "datatype": "BYTES", "shape": [len(encoded)], "data": encoded}]
    with server.client() as c:
        fast = c.post("/v2/models/fmrnet/infer", json={"inputs": inputs, "parameters": {"mode": "fast"}})
        ml = c.post(
            "/v2/models/fmrnet/infer",
            json={"inputs": inputs, "parameters": {"mode": "multilevel", "return_map": True}},
        )
        rbae_fast = c.post("/v2/models/rbae/infer", json={"inputs": inputs, "parameters": {"mode": "fast"}})
    assert fast.status_code == 200 and ml.status_code == 200, fast.text + ml.text
    f = {o["name"]: o["data"] for o in fast.json()["outputs"]}
    np.testing.assert_allclose(np.asarray(f["patch_scores"]).reshape(grids.shape), grids, atol=1e-5)
    thr = float(det.patch_threshold)
    assert f["threshold"] == pytest.approx([thr] * len(images))
    assert f["is_defect"] == [bool(g.max() >= thr) for g in grids]
    m = {o["name"]: o["data"] for o in ml.json()["outputs"]}
    flagged = multi.flagged.flatten(1).any(1).tolist()
    assert m["level"] == ["pixel" if hit else "patch" for hit in flagged]
    for i, hit in enumerate(flagged):
        if hit:
            amap = png_to_map(base64.b64decode(m["anomaly_map_png"][i]))
            lo, hi = m["anomaly_map_range"][2 * i : 2 * i + 2]
            np.testing.assert_allclose(amap, multi.maps[i].numpy(), atol=(hi - lo) / 65535 + 1e-6)
        else:
            assert m["anomaly_map_png"][i] == "" and m["score"][i] == pytest.approx(grids[i].max(), abs=1e-6)
    assert card.threshold is not None
    assert rbae_fast.status_code == 400 and "'fast' is not available" in rbae_fast.text


def test_edge_split_equals_full_inference(trained: dict[str, Any], tmp_path: Path) -> None:
    model = trained["fmrnet"]["model"]
    out = tmp_path / "edge.pt"
    assert texinspect_main(["edge-export", "--model", str(model), "--out", str(out)]) == 0
    edge = EdgeRunner(out)
    det, card = load_detector(model, "cpu")
    assert edge.meta["image_size"] == card.image_size and edge.meta["patch_threshold"] == pytest.approx(
        float(det.patch_threshold)
    )
    images = trained["images"]  # 5 images: a batch size the trace (2) never saw
    batch = torch.stack([torch.from_numpy(edge.decode(p.read_bytes())) for p in images])
    result = edge.run(batch)
    np.testing.assert_allclose(result.patch_scores, det.patch_scores(batch).numpy(), atol=1e-6)
    cloud = CloudHalf(det, card.image_size, "cpu")
    split = cloud.anomaly_map(batch, {k: torch.from_numpy(v) for k, v in result.features.items()})
    np.testing.assert_allclose(split.numpy(), det.anomaly_map(batch).numpy(), atol=1e-6)
    # the edge file holds no decoder weights
    names = {n for n, _ in torch.jit.load(str(out)).named_parameters()}
    assert names and all(n.startswith(("encoder.", "to_latent.")) for n in names)


def test_edge_export_refuses_rbae(trained: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="needs an FMR-Net model, this one is 'rbae'"):
        export_edge(trained["rbae"]["model"], tmp_path / "edge.pt")


def test_edge_features_over_http_give_the_pixel_map(
    server: RunningServer, trained: dict[str, Any], tmp_path: Path
) -> None:
    info = trained["fmrnet"]
    edge = EdgeRunner(export_edge(info["model"], tmp_path / "edge.pt"))
    images = trained["images"]
    files = [p.read_bytes() for p in images]
    batch = torch.stack([torch.from_numpy(edge.decode(b)) for b in files])
    result = edge.run(batch)
    body, headers = split_request(result.features, files, {"return_map_values": True})
    with server.client() as c:
        r = c.post("/v2/models/fmrnet/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    maps = np.asarray(out["anomaly_map"]["data"], dtype=np.float32).reshape(len(images), SIZE, SIZE)
    for i, path in enumerate(images):
        rel = _rel(trained, path)
        assert out["score"]["data"][i] == pytest.approx(info["table"].loc[rel, "score"], abs=1e-5, rel=1e-5)
        np.testing.assert_allclose(
            maps[i], np.load(info["pred"] / "maps" / f"{rel}.npy"), atol=1e-5, rtol=1e-4
        )
    sizes = upload_size(result.features, files)
    per_image = sum(int(np.prod(s)) for s in edge.meta["features"].values()) * 4
    assert sizes["feature_bytes"] == per_image
    assert sizes["encoded_image_bytes"] == pytest.approx(np.mean([len(b) for b in files]))
    assert sizes["request_bytes"] > sizes["feature_bytes"] + sizes["encoded_image_bytes"]  # + base64 and JSON
    print("edge upload per image:", json.dumps(sizes))
    # features of the wrong shape are refused with the expected shape named
    bad = dict(result.features, latent=result.features["latent"][:, :-1])
    body, headers = split_request(bad, files)
    with server.client() as c:
        r = c.post("/v2/models/fmrnet/infer", content=body, headers=headers)
    assert r.status_code == 400 and "input 'latent': shape must be [N, " in r.text


WORK_SIZE_SEGMENTER = ["fmrnet.train_size=48", "fmrnet.patch_stride=16", "fmrnet.segmentation=pixel_unet",
                       "fmrnet.segmenter_training=images", "fmrnet.segmenter_widths=[4,8]", "fmrnet.patch_weight_power=1"]


@pytest.mark.parametrize(
    "weighting", [[], ["fmrnet.patch_weight_power=2", "fmrnet.map_smoothing=4"], WORK_SIZE_SEGMENTER]
)
def test_edge_split_follows_the_configured_skip_levels(tmp_path: Path, weighting: list[str]) -> None:
    """With GFRMs on other encoder layers, with the soft multilevel weighting of the pixel map, and
    with the network at its own side (``fmrnet.train_size``) and the pixel segmenter, the split
    still equals full inference (no training needed)."""
    from texinspect.models.artifact import ModelCard, save_detector

    torch.manual_seed(0)
    overrides = ["model=fmrnet", "fmrnet.gfrm_levels=[2, 4]", *weighting]
    config = load_config(REPO / "params.yaml", overrides, profile="smoke")
    det = family_module("fmrnet").build(config).eval()
    det.set_memory(torch.nn.functional.normalize(torch.randn_like(det.memory), dim=1))
    det.patch_threshold.fill_(0.5)
    card = ModelCard(
        family="fmrnet", config=config.to_dict(), image_size=SIZE, channels=3, threshold=0.1, score_rule=det.image_score_rule
    )
    model_dir = save_detector(det, card, tmp_path / "model")
    edge = EdgeRunner(export_edge(model_dir, tmp_path / "edge.pt"))
    assert list(edge.meta["features"]) == ["latent", "skip2", "skip4"]
    batch = torch.rand(3, 3, SIZE, SIZE)
    result = edge.run(batch)
    cloud = CloudHalf(det, SIZE, "cpu")
    features = {k: torch.from_numpy(v) for k, v in result.features.items()}
    split = cloud.anomaly_map(batch, features)
    np.testing.assert_allclose(split.numpy(), det.anomaly_map(batch).numpy(), atol=1e-6)
    # the server computes the window scores once and hands them to the map: the same map
    windows = cloud.window_scores(features)
    np.testing.assert_allclose(windows.numpy(), det.patch_scores(batch).flatten(1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cloud.anomaly_map(batch, features, windows).numpy(), split.numpy(), atol=1e-6)
    # FMR-Net's image score (largest window memory distance) from the uploaded codes alone
    scores = cloud.patch_image_scores({k: torch.from_numpy(v) for k, v in result.features.items()})
    expected = det.image_score(batch, split, card.score_smoothing)
    np.testing.assert_allclose(scores.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"expects images \(B, 3, 64, 64\)"):
        edge.run(torch.rand(1, 3, 32, 32))

"""A real `texinspect serve` on 127.0.0.1 with the toy family: both protocols, results equal to
`texinspect predict`, health and metadata endpoints, batching of concurrent requests, and every
bad-input case answered with a 4xx that names the problem while the server keeps serving.
"""

from __future__ import annotations

import http.client
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import serving_toy_family as toy
import torch
from PIL import Image
from serving_helpers import RunningServer, b64, png_bytes, running_server, write_images

from texinspect.data.images import load_image
from texinspect.models.artifact import load_card, load_detector
from texinspect.prediction import predict
from texinspect.serving.encoding import png_to_map, png_to_mask

SIZE = 32
MAX_IMAGES = 8
MAX_PIXELS = 1_000_000
MAX_IMAGE_MB = 0.25


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("serving_http")
    images = write_images(root / "images", count=6)
    # thresholds at the medians of this image set, so both decisions occur
    det, _ = load_detector(toy.write_model(root / "probe", size=SIZE), "cpu")
    batch = torch.stack([torch.from_numpy(load_image(p, SIZE, 3)) for p in images])
    with torch.no_grad():
        maps = det.anomaly_map(batch)
        patches = det.patch_scores(batch).flatten(1).amax(1)
    from texinspect.scoring import image_scores

    scores = image_scores(maps, 4.0)
    model = toy.write_model(
        root / "toy",
        size=SIZE,
        threshold=float(scores.median()),
        pixel_threshold=float(maps.quantile(0.9)),
        patch_threshold=float(patches.median()),
    )
    bare = toy.write_model(root / "bare", size=SIZE)  # no thresholds at all
    pred_dir = root / "pred"
    table = predict(model, root / "images", pred_dir, device="cpu", batch_size=4)
    return {"root": root, "images": images, "model": model, "bare": bare, "pred": pred_dir, "table": table}


@pytest.fixture(scope="module")
def server(setup: dict[str, Any]) -> Any:
    args = [
        "--max-images",
        str(MAX_IMAGES),
        "--max-pixels",
        str(MAX_PIXELS),
        "--max-image-mb",
        str(MAX_IMAGE_MB),
        "--max-batch",
        "8",  # server-side batching on, so concurrent requests share forward passes here
    ]
    with running_server([f"toy={setup['model']}", f"bare={setup['bare']}"], setup["root"], args) as srv:
        yield srv


def _expected(setup: dict[str, Any]) -> pd.DataFrame:
    return setup["table"].set_index("path")


def _v1(server: RunningServer, model: str, body: Any, **kwargs: Any) -> Any:
    with server.client() as c:
        return c.post(f"/v1/models/{model}:predict", json=body, **kwargs)


def _v2(server: RunningServer, model: str, body: Any) -> Any:
    with server.client() as c:
        return c.post(f"/v2/models/{model}/infer", json=body)


def _good_v1(server: RunningServer, setup: dict[str, Any]) -> None:
    path = setup["images"][0]
    r = _v1(server, "toy", {"instances": [{"image_b64": b64(path.read_bytes())}]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["score"] == pytest.approx(
        _expected(setup).loc[path.name, "score"], abs=1e-5
    )


# --------------------------------------------------------------------------- endpoints


def test_binds_loopback_only(server: RunningServer) -> None:
    """The listening socket is 127.0.0.1:<port>, not 0.0.0.0 or [::] (read from /proc/net)."""
    port_hex = f"{server.port:04X}"
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and local.endswith(":" + port_hex):  # 0A = LISTEN
                listening.append(local)
    assert listening == [f"0100007F:{port_hex}"]


def test_health_and_metadata(server: RunningServer, setup: dict[str, Any]) -> None:
    with server.client() as c:
        assert c.get("/").json() == {"status": "alive"}
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get("/v2/models/toy/ready").json() == {"name": "toy", "ready": True}
        assert c.get("/v1/models/toy").json() == {"name": "toy", "ready": True}
        assert sorted(c.get("/v1/models").json()["models"]) == ["bare", "toy"]
        assert c.get("/v2").json()["name"]  # server metadata
        meta = c.get("/v2/models/toy").json()
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert inputs["image"]["datatype"] == "BYTES"
    assert inputs["image_tensor"] == {
        "name": "image_tensor",
        "datatype": "FP32",
        "shape": [-1, 3, SIZE, SIZE],
    }
    outputs = {o["name"] for o in meta["outputs"]}
    assert {"score", "is_defect", "anomaly_map_png", "defect_mask_png", "patch_scores"} <= outputs


# --------------------------------------------------------------------------- results equal `predict`


def test_v1_matches_predict(server: RunningServer, setup: dict[str, Any]) -> None:
    expected = _expected(setup)
    card = load_card(setup["model"])
    body = {
        "instances": [{"image_b64": b64(p.read_bytes())} for p in setup["images"]],
        "parameters": {"return_map": True, "return_mask": True, "return_map_values": True},
    }
    r = _v1(server, "toy", body)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == len(setup["images"])
    decisions = set()
    for path, pred in zip(setup["images"], preds, strict=True):
        row = expected.loc[path.name]
        assert pred["score"] == pytest.approx(row["score"], abs=1e-5)
        assert pred["is_defect"] == bool(row["is_defect"])
        assert pred["threshold"] == pytest.approx(card.threshold)
        assert pred["level"] == "pixel"
        ref = np.load(setup["pred"] / "maps" / f"{path.name}.npy")
        values = np.asarray(pred["anomaly_map"], dtype=np.float32)
        np.testing.assert_allclose(values, ref, atol=1e-5)
        lo, hi = pred["anomaly_map_range"]
        from_png = png_to_map(__import__("base64").b64decode(pred["anomaly_map_png"]))
        np.testing.assert_allclose(from_png, ref, atol=(hi - lo) / 65535 + 1e-6)
        mask = png_to_mask(__import__("base64").b64decode(pred["defect_mask_png"]))
        np.testing.assert_array_equal(mask, values >= card.pixel_threshold)
        decisions.add(pred["is_defect"])
    assert decisions == {True, False}


def test_v1_accepts_a_body_without_json_content_type(server: RunningServer, setup: dict[str, Any]) -> None:
    """`curl -d` sends application/x-www-form-urlencoded; kserve passes the raw body through."""
    path = setup["images"][1]
    body = json.dumps({"instances": [{"image_b64": b64(path.read_bytes())}]})
    with server.client() as c:
        r = c.post(
            "/v1/models/toy:predict",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["score"] == pytest.approx(
        _expected(setup).loc[path.name, "score"], abs=1e-5
    )


def _outputs(response: Any) -> dict[str, Any]:
    return {o["name"]: o for o in response.json()["outputs"]}


def test_v2_bytes_matches_predict(server: RunningServer, setup: dict[str, Any]) -> None:
    expected = _expected(setup)
    data = [b64(p.read_bytes()) for p in setup["images"]]
    body = {
        "id": "req-1",
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(data)], "data": data}],
        "parameters": {"return_map": True, "return_mask": True},
    }
    r = _v2(server, "toy", body)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "req-1"
    out = _outputs(r)
    assert out["score"]["datatype"] == "FP32" and out["is_defect"]["datatype"] == "BOOL"
    want = [expected.loc[p.name, "score"] for p in setup["images"]]
    np.testing.assert_allclose(out["score"]["data"], want, atol=1e-5)
    assert out["is_defect"]["data"] == [bool(expected.loc[p.name, "is_defect"]) for p in setup["images"]]
    assert out["anomaly_map_range"]["shape"] == [len(data), 2]
    for i, path in enumerate(setup["images"]):
        ref = np.load(setup["pred"] / "maps" / f"{path.name}.npy")
        lo, hi = out["anomaly_map_range"]["data"][2 * i : 2 * i + 2]
        amap = png_to_map(__import__("base64").b64decode(out["anomaly_map_png"]["data"][i]))
        np.testing.assert_allclose(amap, ref, atol=(hi - lo) / 65535 + 1e-6)


def test_v2_tensor_and_requested_outputs(server: RunningServer, setup: dict[str, Any]) -> None:
    """An FP32 tensor of preprocessed pixels gives the same maps; `outputs` picks what comes back."""
    arrays = np.stack([load_image(p, SIZE, 3) for p in setup["images"][:3]])
    body = {
        "inputs": [
            {
                "name": "image_tensor",
                "datatype": "FP32",
                "shape": list(arrays.shape),
                "data": arrays.ravel().tolist(),
            }
        ],
        "outputs": [{"name": "score"}, {"name": "anomaly_map"}],
    }
    r = _v2(server, "toy", body)
    assert r.status_code == 200, r.text
    out = _outputs(r)
    assert set(out) == {"score", "anomaly_map"}
    assert out["anomaly_map"]["shape"] == [3, SIZE, SIZE]
    maps = np.asarray(out["anomaly_map"]["data"], dtype=np.float32).reshape(3, SIZE, SIZE)
    for i, path in enumerate(setup["images"][:3]):
        np.testing.assert_allclose(maps[i], np.load(setup["pred"] / "maps" / f"{path.name}.npy"), atol=1e-5)


def test_v2_binary_extension_in_and_out(server: RunningServer, setup: dict[str, Any]) -> None:
    """FP32 input in the binary part of the body, outputs requested as binary too."""
    arrays = np.stack([load_image(p, SIZE, 3) for p in setup["images"][:2]]).astype("<f4")
    blob = arrays.tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image_tensor",
                    "datatype": "FP32",
                    "shape": list(arrays.shape),
                    "parameters": {"binary_data_size": len(blob)},
                }
            ],
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "score", "parameters": {"binary_data": True}}],
        }
    ).encode()
    with server.client() as c:
        r = c.post(
            "/v2/models/toy/infer",
            content=header + blob,
            headers={
                "content-type": "application/octet-stream",
                "inference-header-content-length": str(len(header)),
            },
        )
    assert r.status_code == 200, r.text
    json_len = int(r.headers["inference-header-content-length"])
    scores = np.frombuffer(r.content[json_len:], dtype="<f4")
    want = [_expected(setup).loc[p.name, "score"] for p in setup["images"][:2]]
    np.testing.assert_allclose(scores, want, atol=1e-5)


def test_fast_and_multilevel_modes(server: RunningServer, setup: dict[str, Any]) -> None:
    det, card = load_detector(setup["model"], "cpu")
    batch = torch.stack([torch.from_numpy(load_image(p, SIZE, 3)) for p in setup["images"]])
    with torch.no_grad():
        grids = det.patch_scores(batch).numpy()
    patch_thr = float(det.patch_threshold)
    data = [b64(p.read_bytes()) for p in setup["images"]]
    inputs = [{"name": "image", "datatype": "BYTES", "shape": [len(data)], "data": data}]
    fast = _outputs(_v2(server, "toy", {"inputs": inputs, "parameters": {"mode": "fast"}}))
    got = np.asarray(fast["patch_scores"]["data"], dtype=np.float32).reshape(grids.shape)
    np.testing.assert_allclose(got, grids, atol=1e-5)
    assert fast["level"]["data"] == ["patch"] * len(data)
    assert fast["is_defect"]["data"] == [bool(g.max() >= patch_thr) for g in grids]

    multi = _outputs(_v2(server, "toy", {"inputs": inputs, "parameters": {"mode": "multilevel"}}))
    expected = _expected(setup)
    for i, path in enumerate(setup["images"]):
        flagged = grids[i].max() >= patch_thr
        assert multi["level"]["data"][i] == ("pixel" if flagged else "patch")
        want = expected.loc[path.name, "score"] if flagged else grids[i].max()
        assert multi["score"]["data"][i] == pytest.approx(want, abs=1e-5)
    assert set(multi["level"]["data"]) == {"pixel", "patch"}
    assert card.threshold is not None


def test_concurrent_requests_each_get_their_own_result(server: RunningServer, setup: dict[str, Any]) -> None:
    """Server-side batching merges concurrent requests; every reply must still be its own image's."""
    expected = _expected(setup)
    jobs = [setup["images"][i % len(setup["images"])] for i in range(12)]

    def one(path: Path) -> float:
        r = _v1(server, "toy", {"instances": [{"image_b64": b64(path.read_bytes())}]})
        assert r.status_code == 200, r.text
        return r.json()["predictions"][0]["score"]

    with ThreadPoolExecutor(6) as pool:
        scores = list(pool.map(one, jobs))
    for path, score in zip(jobs, scores, strict=True):
        assert score == pytest.approx(expected.loc[path.name, "score"], abs=1e-5)


# --------------------------------------------------------------------------- bad input


def _bomb_png() -> bytes:
    """A few kB of PNG that would decode to 2000 x 2000 = 4 M pixels (the server allows 1 M)."""
    return png_bytes(np.zeros((2000, 2000), dtype=np.uint8))


def _image(setup: dict[str, Any]) -> bytes:
    return setup["images"][0].read_bytes()


def _tensor(
    shape: list[int], dtype: str = "FP32", value: Any = 0.5, count: int | None = None
) -> dict[str, Any]:
    n = int(np.prod(shape)) if count is None else count
    return {"inputs": [{"name": "image_tensor", "datatype": dtype, "shape": shape, "data": [value] * n}]}


def _bytes_input(items: list[str], shape: list[int] | None = None) -> dict[str, Any]:
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": shape or [len(items)], "data": items}]}


def _nan_tiff() -> bytes:
    """A float32 TIFF full of NaN: it used to answer 200 with score null and is_defect false."""
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40), np.nan, np.float32), mode="F").save(buf, format="TIFF")
    return buf.getvalue()


# numpy's int64 product of this shape wraps to exactly 3 * SIZE * SIZE: it passed the count check
OVERFLOW_SHAPE = [2**54 + 1, 3, SIZE, SIZE]
assert int(np.prod(OVERFLOW_SHAPE)) == 3 * SIZE * SIZE


# (id, protocol, model, body or raw bytes, status, text the error must contain)
BAD_CASES: list[tuple[str, str, str, Any, int, str]] = [
    ("v1-malformed-json", "v1", "toy", b'{"instances": [', 400, "Unrecognized request format"),
    ("v2-malformed-json", "v2", "toy", b'{"inputs": [', 422, "JSON decode error"),
    ("v1-bad-base64", "v1", "toy", {"instances": [{"image_b64": "not*base64!"}]}, 400, "not valid base64"),
    ("v2-bad-base64", "v2", "toy", _bytes_input(["@@@@"]), 400, "input 'image'[0]: not valid base64"),
    (
        "v1-not-an-image",
        "v1",
        "toy",
        {"instances": [{"image_b64": b64(b"hello, not a picture")}]},
        400,
        "not a readable image",
    ),
    ("v2-not-an-image", "v2", "toy", _bytes_input([b64(b"%PDF-1.4 nope")]), 400, "not a readable image"),
    ("v1-empty-string", "v1", "toy", {"instances": [{"image_b64": ""}]}, 400, "empty string"),
    ("v1-empty-instances", "v1", "toy", {"instances": []}, 400, "no images in the request"),
    ("v1-no-instances", "v1", "toy", {"images": []}, 400, "unknown key 'images'"),
    ("v1-instances-not-list", "v1", "toy", {"instances": "abc"}, 400, "instances: expected a list"),
    ("v1-instance-not-object", "v1", "toy", {"instances": ["abc"]}, 400, "instances[0]: expected an object"),
    (
        "v1-instance-unknown-key",
        "v1",
        "toy",
        {"instances": [{"image": "x"}]},
        400,
        "instances[0]: unknown key 'image'",
    ),
    ("v1-body-not-object", "v1", "toy", [1, 2], 400, "must be a JSON object"),
    ("v2-empty-inputs", "v2", "toy", {"inputs": []}, 400, "inputs: empty"),
    ("v2-empty-bytes", "v2", "toy", _bytes_input([], [0]), 400, "no images in the request"),
    (
        "v2-wrong-shape",
        "v2",
        "toy",
        _tensor([1, 3, SIZE, SIZE - 1]),
        400,
        f"shape must be [N, 3, {SIZE}, {SIZE}]",
    ),
    ("v2-wrong-rank", "v2", "toy", _tensor([3, SIZE, SIZE]), 400, "shape must be"),
    (
        "v2-wrong-dtype-fp64",
        "v2",
        "toy",
        _tensor([1, 3, SIZE, SIZE], "FP64"),
        400,
        "datatype must be FP32, got FP64",
    ),
    (
        "v2-wrong-dtype-int",
        "v2",
        "toy",
        _tensor([1, 3, SIZE, SIZE], "INT32", 0),
        400,
        "datatype must be FP32",
    ),
    (
        "v2-data-count",
        "v2",
        "toy",
        _tensor([1, 3, SIZE, SIZE], count=10),
        400,
        "needs 3072 values, 'data' holds 10",
    ),
    (
        "v2-data-strings",
        "v2",
        "toy",
        _tensor([1, 3, SIZE, SIZE], value="x"),
        400,
        "must hold numbers only, found strings",
    ),
    (
        "v2-out-of-range",
        "v2",
        "toy",
        _tensor([1, 3, SIZE, SIZE], value=3.0),
        400,
        "values must lie in [0, 1]",
    ),
    (
        "v2-bytes-wrong-dtype",
        "v2",
        "toy",
        {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
        400,
        "datatype must be BYTES",
    ),
    (
        "v2-unknown-input",
        "v2",
        "toy",
        {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
        400,
        "unknown input name",
    ),
    (
        "v2-unknown-output",
        "v2",
        "toy",
        {**_bytes_input(["AAAA"]), "outputs": [{"name": "heatmap"}]},
        400,
        "unknown output 'heatmap'",
    ),
    (
        "v2-missing-data",
        "v2",
        "toy",
        {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]},
        422,
        "Field required",
    ),
    (
        "v1-bad-mode",
        "v1",
        "toy",
        {"instances": [{"image_b64": "AAAA"}], "parameters": {"mode": "turbo"}},
        400,
        "parameters.mode",
    ),
    (
        "v1-bad-flag",
        "v1",
        "toy",
        {"instances": [{"image_b64": "AAAA"}], "parameters": {"return_map": "yes"}},
        400,
        "expected true or false",
    ),
    (
        "v1-unknown-parameter",
        "v1",
        "toy",
        {"instances": [{"image_b64": "AAAA"}], "parameters": {"colour": 1}},
        400,
        "unknown key 'colour'",
    ),
    (
        "v1-mask-without-threshold",
        "v1",
        "bare",
        {"instances": [{"image_b64": "AAAA"}], "parameters": {"return_mask": True}},
        400,
        "no pixel threshold",
    ),
    (
        "v1-unknown-model",
        "v1",
        "nosuchmodel",
        {"instances": [{"image_b64": "AAAA"}]},
        404,
        "nosuchmodel does not exist",
    ),
    ("v2-unknown-model", "v2", "nosuchmodel", _bytes_input(["AAAA"]), 404, "nosuchmodel does not exist"),
    (
        "v2-shape-overflow",
        "v2",
        "toy",
        _tensor(OVERFLOW_SHAPE, count=3 * SIZE * SIZE),
        400,
        f"shape {OVERFLOW_SHAPE}: axis 0 is {2**54 + 1}, over the limit",
    ),
    (
        "v2-tensor-too-many-images",
        "v2",
        "toy",
        _tensor([MAX_IMAGES + 1, 3, SIZE, SIZE]),
        400,
        f"{MAX_IMAGES + 1} images in one request, over the limit of {MAX_IMAGES}",
    ),
    (
        "v1-nan-tiff",
        "v1",
        "toy",
        {"instances": [{"image_b64": b64(_nan_tiff())}]},
        400,
        "instances[0].image_b64: 1600 of 1600 pixels are NaN or infinite",
    ),
    ("v2-nan-tiff", "v2", "toy", _bytes_input([b64(_nan_tiff())]), 400, "pixels are NaN or infinite"),
]


def _cases_needing_images(setup: dict[str, Any]) -> list[tuple[str, str, str, Any, int, str]]:
    img = _image(setup)
    noise = np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    return [
        (
            "v1-truncated",
            "v1",
            "toy",
            {"instances": [{"image_b64": b64(img[: len(img) // 2])}]},
            400,
            "truncated",
        ),
        ("v2-truncated", "v2", "toy", _bytes_input([b64(img[: len(img) // 2])]), 400, "truncated"),
        (
            "v1-decompression-bomb",
            "v1",
            "toy",
            {"instances": [{"image_b64": b64(_bomb_png())}]},
            400,
            "over the limit of 1000000",
        ),
        (
            "v2-decompression-bomb",
            "v2",
            "toy",
            _bytes_input([b64(_bomb_png())]),
            400,
            "over the limit of 1000000",
        ),
        (
            "v1-too-many-bytes",
            "v1",
            "toy",
            {"instances": [{"image_b64": b64(noise)}]},
            400,
            "over the limit of 262144 bytes",
        ),
        (
            "v1-too-many-images",
            "v1",
            "toy",
            {"instances": [{"image_b64": b64(img)}] * (MAX_IMAGES + 1)},
            400,
            f"over the limit of {MAX_IMAGES}",
        ),
        ("v2-bytes-count", "v2", "toy", _bytes_input([b64(img)], [2]), 400, "says 2 images, 'data' holds 1"),
    ]


def _send(server: RunningServer, protocol: str, model: str, body: Any) -> Any:
    path = f"/v1/models/{model}:predict" if protocol == "v1" else f"/v2/models/{model}/infer"
    with server.client() as c:
        if isinstance(body, bytes):
            return c.post(path, content=body, headers={"content-type": "application/json"})
        return c.post(path, json=body)


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_a_4xx_that_names_the_problem(
    server: RunningServer, setup: dict[str, Any], case: tuple[str, str, str, Any, int, str]
) -> None:
    _, protocol, model, body, status, text = case
    r = _send(server, protocol, model, body)
    assert r.status_code == status, r.text
    assert text in r.text
    _good_v1(server, setup)  # the server keeps answering good requests


def test_bad_images_are_4xx_that_name_the_problem(server: RunningServer, setup: dict[str, Any]) -> None:
    for name, protocol, model, body, status, text in _cases_needing_images(setup):
        r = _send(server, protocol, model, body)
        assert r.status_code == status, f"{name}: {r.text}"
        assert text in r.text, f"{name}: {r.text}"
        _good_v1(server, setup)


def test_bad_binary_bodies_are_4xx(server: RunningServer, setup: dict[str, Any]) -> None:
    """Decoding failures inside kserve's binary-extension parser are the client's error too."""
    blob = np.zeros(3 * SIZE * SIZE - 2, dtype="<f4").tobytes()
    short = {
        "name": "image_tensor",
        "datatype": "FP32",
        "shape": [1, 3, SIZE, SIZE],
        "parameters": {"binary_data_size": len(blob)},
    }
    raw = _image(setup)
    raw_blob = len(raw).to_bytes(4, "little") + raw
    raw_bytes = {
        "name": "image",
        "datatype": "BYTES",
        "shape": [1],
        "parameters": {"binary_data_size": len(raw_blob)},
    }
    cases = [
        (json.dumps({"inputs": [short]}).encode(), blob, "cannot reshape"),
        (
            json.dumps({"inputs": [raw_bytes]}).encode(),
            raw_blob,
            "not UTF-8 text; send each image base64-encoded",
        ),
        (json.dumps({"no_inputs": []}).encode(), b"", "misses the key 'inputs'"),
        (  # a size larger than the body used to be cut silently to what was there
            json.dumps({"inputs": [{**short, "shape": [1, 3, SIZE, SIZE], "parameters": {"binary_data_size": 10**9}}]}).encode(),
            np.zeros(3 * SIZE * SIZE, dtype="<f4").tobytes(),
            f"binary_data_size is 1000000000 bytes, but only {3 * SIZE * SIZE * 4} bytes of the body are left",
        ),
        (
            json.dumps({"inputs": [{**short, "parameters": {"binary_data_size": -5}}]}).encode(),
            blob,
            "binary_data_size must be a byte count >= 0, got -5",
        ),
    ]
    with server.client() as c:
        for header, tail, text in cases:
            r = c.post(
                "/v2/models/toy/infer",
                content=header + tail,
                headers={
                    "content-type": "application/octet-stream",
                    "inference-header-content-length": str(len(header)),
                },
            )
            assert r.status_code == 400, r.text
            assert text in r.text
    _good_v1(server, setup)
    assert server.alive()


# --------------------------------------------------------------------------- methods, content types, logs (issue 20)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models/toy:predict"),
        ("PUT", "/v1/models/toy:predict"),
        ("GET", "/v1/models/nosuchmodel:predict"),
        ("GET", "/v2/models/toy/infer"),
        ("DELETE", "/v2/models/toy/infer"),
    ],
)
def test_wrong_method_on_an_inference_path_is_405_naming_it(server: RunningServer, method: str, path: str) -> None:
    """`GET /v1/models/tile:predict` used to answer 404 "Model with name tile:predict does not exist"."""
    with server.client() as c:
        r = c.request(method, path)
        assert r.status_code == 405, r.text
        assert r.json() == {"error": f"method {method} is not allowed on this endpoint; send the request with POST"}
        assert r.headers["allow"] == "POST"
        assert c.get("/v1/models/toy").json() == {"name": "toy", "ready": True}  # readiness still answers


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "image/png"])
def test_v2_body_of_a_non_json_content_type_is_415_naming_it(
    server: RunningServer, setup: dict[str, Any], content_type: str
) -> None:
    """It used to be a 400 about a missing `inference-header-content-length` header."""
    body = json.dumps(_bytes_input([b64(_image(setup))])).encode()
    with server.client() as c:
        r = c.post("/v2/models/toy/infer", content=body, headers={"content-type": content_type})
    assert r.status_code == 415, r.text
    assert f"content type '{content_type}' is not supported for V2 inference" in r.json()["error"]
    _good_v1(server, setup)


def test_overflowing_shape_is_400_and_the_connection_stays_open(server: RunningServer) -> None:
    """The overflowing shape used to answer 500 and reset the keep-alive connection, so the client's
    next request on it failed: both requests go over one connection here."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        body = json.dumps(_tensor(OVERFLOW_SHAPE, count=3 * SIZE * SIZE))
        conn.request("POST", "/v2/models/toy/infer", body=body, headers={"content-type": "application/json"})
        first = conn.getresponse()
        assert first.status == 400 and b"over the limit" in first.read()
        assert first.getheader("connection", "").lower() != "close"
        sock = conn.sock
        conn.request("GET", "/v2/models/toy/ready")
        second = conn.getresponse()
        assert second.status == 200 and json.loads(second.read()) == {"name": "toy", "ready": True}
        assert conn.sock is sock  # the same connection, not a silent reconnect
    finally:
        conn.close()


def test_client_errors_log_one_warning_line_each_and_no_traceback(
    server: RunningServer, setup: dict[str, Any]
) -> None:
    """Each 4xx used to be logged at ERROR with a ~2 KB traceback: a client could fill the disk."""
    bad = [
        ("POST", "/v1/models/toy:predict", {"instances": [{"image_b64": "not*base64!"}]}, 400),
        ("POST", "/v2/models/toy/infer", _tensor([1, 3, SIZE, SIZE], value=3.0), 400),
        ("POST", "/v1/models/nosuchmodel:predict", {"instances": []}, 404),
        ("GET", "/v1/models/toy:predict", None, 405),
        ("POST", "/v2/models/toy/infer", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}, 422),
    ]
    ids = []
    with server.client() as c:
        for i, (method, path, body, status) in enumerate(bad):
            rid = f"issue20-log-{i}"
            r = c.request(method, path, json=body, headers={"x-request-id": rid})
            assert r.status_code == status, r.text
            assert r.headers["x-request-id"] == rid
            ids.append((rid, status, method, path))
    _good_v1(server, setup)
    log = server.log_path.read_text(errors="replace")
    for rid, status, method, path in ids:
        lines = [line for line in log.splitlines() if rid in line]
        assert len(lines) == 1, lines
        assert re.search(rf" WARNING texinspect\.serving\.http: {status} {method} {re.escape(path)}: .+ \[request id {rid}\]$", lines[0]), lines[0]
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]

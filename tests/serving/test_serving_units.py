"""Pieces of the server without HTTP: PNG/base64 encoding, request parsing, the micro-batcher,
the model-argument syntax, and importing kserve without it reading our command line."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from texinspect.cli.serving import split_model_arg
from texinspect.serving.batching import MicroBatcher
from texinspect.serving.encoding import (
    RequestError,
    decode_b64,
    map_to_png,
    mask_to_png,
    png_to_map,
    png_to_mask,
)
from texinspect.serving.kserve_import import import_kserve
from texinspect.serving.protocol import InputSpec, Limits, parse_v1, parse_v2

SPEC = InputSpec(channels=3, size=8, modes=("full", "fast", "multilevel"))
EDGE_SPEC = InputSpec(channels=3, size=8, modes=("full",), features={"latent": (4, 2), "skip3": (4, 1, 2, 2)})


# --------------------------------------------------------------------------- encoding


def test_map_png_round_trip_keeps_values_to_a_65535th_of_the_range() -> None:
    amap = np.random.default_rng(0).normal(3.0, 2.0, (17, 23)).astype(np.float32)
    png, lo, hi = map_to_png(amap)
    assert (lo, hi) == (pytest.approx(amap.min()), pytest.approx(amap.max()))
    back = png_to_map(png)
    assert back.shape == amap.shape
    assert np.abs(back - amap).max() <= (hi - lo) / 65535 + 1e-6


def test_constant_map_and_mask_round_trip() -> None:
    png, lo, hi = map_to_png(np.full((4, 5), 0.25, dtype=np.float32))
    assert lo == hi == 0.25
    np.testing.assert_allclose(png_to_map(png), 0.25)
    mask = np.random.default_rng(1).random((9, 7)) > 0.5
    np.testing.assert_array_equal(png_to_mask(mask_to_png(mask)), mask)


def test_decode_b64_accepts_data_uris_and_wrapped_text() -> None:
    raw = bytes(range(200))
    text = base64.b64encode(raw).decode()
    assert decode_b64(text, "x", 1000) == raw
    assert decode_b64("data:image/png;base64," + text, "x", 1000) == raw
    assert decode_b64(text[:50] + "\n" + text[50:], "x", 1000) == raw


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc$", "x: not valid base64"),
        ("", "x: empty string"),
        (12, "x: expected a base64 string, got int"),
        (base64.b64encode(bytes(2000)).decode(), "over the limit of 1000 bytes"),
    ],
)
def test_decode_b64_errors_name_the_field(value: object, message: str) -> None:
    with pytest.raises(RequestError, match=message.replace("$", r"\$")):
        decode_b64(value, "x", 1000)


# --------------------------------------------------------------------------- parsing


def test_parse_v1_from_raw_bytes_and_options() -> None:
    body = b'{"instances": [{"image_b64": "AAAA"}], "parameters": {"mode": "fast", "return_map": true}}'
    parsed = parse_v1(body, Limits(), SPEC)
    assert parsed.encoded == [b"\x00\x00\x00"]
    assert parsed.options.mode == "fast" and parsed.options.return_map
    with pytest.raises(RequestError, match="return_map_values: only available with mode 'full'"):
        parse_v1(
            {"instances": [{"image_b64": "AAAA"}], "parameters": {"mode": "fast", "return_map_values": True}},
            Limits(),
            SPEC,
        )
    with pytest.raises(RequestError, match="'fast' is not available for this model"):
        parse_v1(
            {"instances": [{"image_b64": "AAAA"}], "parameters": {"mode": "fast"}}, Limits(), InputSpec(3, 8)
        )


def _request(inputs: list[dict], **kwargs: object):  # -> kserve InferRequest
    import_kserve()
    from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

    infer_inputs = [InferInput(i["name"], i["shape"], i["datatype"], i.get("data")) for i in inputs]
    outputs = [RequestedOutput(n) for n in kwargs.pop("outputs", [])] or None
    return InferRequest("m", infer_inputs, request_outputs=outputs, **kwargs)


def test_parse_v2_nested_tensor_data_and_outputs() -> None:
    data = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    req = _request(
        [{"name": "image_tensor", "shape": [2, 3, 8, 8], "datatype": "FP32", "data": data.tolist()}],
        outputs=["anomaly_map_png"],
    )
    parsed = parse_v2(req, Limits(), SPEC)
    np.testing.assert_allclose(parsed.tensor, data)
    assert parsed.options.return_map and parsed.outputs == ("anomaly_map_png",)


def test_parse_v2_output_and_mode_conflicts() -> None:
    inputs = [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["AAAA"]}]
    with pytest.raises(RequestError, match="patch scores need parameters.mode"):
        parse_v2(_request(inputs, outputs=["patch_scores"]), Limits(), SPEC)
    with pytest.raises(RequestError, match="'anomaly_map' is only available with mode 'full'"):
        parse_v2(_request(inputs, outputs=["anomaly_map"], parameters={"mode": "fast"}), Limits(), SPEC)
    with pytest.raises(RequestError, match="'image' given twice"):
        parse_v2(_request(inputs * 2), Limits(), SPEC)


def test_parse_v2_edge_features() -> None:
    image = {"name": "image", "shape": [2], "datatype": "BYTES", "data": ["AAAA", "AAAA"]}
    latent = {"name": "latent", "shape": [2, 4, 2], "datatype": "FP32", "data": [0.5] * 16}
    skip3 = {"name": "skip3", "shape": [2, 4, 1, 2, 2], "datatype": "FP32", "data": [0.1] * 32}
    parsed = parse_v2(_request([image, latent, skip3]), Limits(), EDGE_SPEC)
    assert parsed.features is not None and parsed.features["skip3"].shape == (2, 4, 1, 2, 2)
    assert len(parsed.encoded or []) == 2
    with pytest.raises(RequestError, match="'skip3' is missing"):
        parse_v2(_request([image, latent]), Limits(), EDGE_SPEC)
    with pytest.raises(RequestError, match="exactly one image input"):
        parse_v2(_request([latent, skip3]), Limits(), EDGE_SPEC)
    bad = dict(latent, shape=[2, 5, 2], data=[0.5] * 20)
    with pytest.raises(RequestError, match=r"input 'latent': shape must be \[N, 4, 2\]"):
        parse_v2(_request([image, bad, skip3]), Limits(), EDGE_SPEC)
    one_image = dict(image, shape=[1], data=["AAAA"])
    with pytest.raises(RequestError, match="different numbers of images"):
        parse_v2(_request([one_image, latent, skip3]), Limits(), EDGE_SPEC)


# --------------------------------------------------------------------------- batching


def test_micro_batcher_merges_concurrent_requests_and_slices_results() -> None:
    calls: list[tuple[int, str]] = []
    gate = threading.Event()

    def fn(images: torch.Tensor, key: str) -> list[float]:
        gate.wait(5)  # hold the first batch so the others queue up behind it
        calls.append((len(images), key))
        return [float(x) for x in images[:, 0]]

    async def main() -> list[list[float]]:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fn, pool, max_batch=16)
            first = asyncio.ensure_future(batcher.submit(torch.tensor([[0.0]]), "full"))
            await asyncio.sleep(0.05)
            rest = [
                asyncio.ensure_future(batcher.submit(torch.tensor([[float(i)], [float(i) + 0.5]]), key))
                for i, key in ((1, "full"), (2, "fast"), (3, "full"))
            ]
            await asyncio.sleep(0.05)
            gate.set()
            return await asyncio.gather(first, *rest)

    results = asyncio.run(main())
    assert results == [[0.0], [1.0, 1.5], [2.0, 2.5], [3.0, 3.5]]
    assert calls[0] == (1, "full")
    assert sorted(calls[1:]) == [(2, "fast"), (4, "full")]  # the two queued "full" requests ran as one batch


def test_micro_batcher_error_reaches_its_requests_and_worker_survives() -> None:
    def fn(images: torch.Tensor, key: str) -> list[float]:
        if key == "bad":
            raise ValueError("boom")
        return [1.0] * len(images)

    async def main() -> tuple[BaseException | list[float], list[float]]:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fn, pool)
            bad = await asyncio.gather(batcher.submit(torch.zeros(1, 1), "bad"), return_exceptions=True)
            good = await batcher.submit(torch.zeros(2, 1), "ok")
            return bad[0], good

    bad, good = asyncio.run(main())
    assert isinstance(bad, ValueError) and good == [1.0, 1.0]


# --------------------------------------------------------------------------- CLI bits


def test_split_model_arg() -> None:
    assert split_model_arg("toy=/tmp/m") == ("toy", "/tmp/m")
    assert split_model_arg("/tmp/m") == (None, "/tmp/m")
    assert split_model_arg("champ=models:/texinspect@champion") == ("champ", "models:/texinspect@champion")
    assert split_model_arg("s3://bucket/k=v/model") == (None, "s3://bucket/k=v/model")


def test_importing_kserve_does_not_read_our_argv() -> None:
    """kserve parses sys.argv on import; an argument it would reject must not break us."""
    code = (
        "import sys; sys.argv = ['texinspect', 'serve', '--http_port', 'not-a-number', '--model', 'x'];"
        "from texinspect.serving.kserve_import import import_kserve; k = import_kserve();"
        "assert sys.argv[3] == 'not-a-number'; print(k.Model.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "Model"


def test_serve_with_a_missing_model_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from texinspect.cli import main

    assert main(["serve", "--model", f"m={tmp_path / 'nope'}", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model '") and "does not exist" in err
    assert main(["serve", "--model", str(tmp_path), "--family", "broken"]) == 2
    assert "--family 'broken': expected NAME=MODULE" in capsys.readouterr().err


# --------------------------------------------------------------------------- shapes, errors, logs (issue 20)


def _v2_tensor(shape: list[int], count: int) -> object:
    import_kserve()
    from kserve.protocol.infer_type import InferInput, InferRequest

    inp = InferInput(name="image_tensor", shape=shape, datatype="FP32", data=[0.5] * count)
    return InferRequest(model_name="m", infer_inputs=[inp])


def test_parse_v2_checks_shapes_with_exact_integers_before_allocating() -> None:
    """numpy's int64 product of [2**58 + 1, 3, 8, 8] wraps to 192, the number of values sent."""
    shape = [2**58 + 1, 3, 8, 8]
    assert int(np.prod(shape)) == 192
    with pytest.raises(RequestError, match=r"axis 0 is 288230376151711745, over the limit of 1048576"):
        parse_v2(_v2_tensor(shape, 192), Limits(), SPEC)
    with pytest.raises(RequestError, match="65 images in one request, over the limit of 64"):
        parse_v2(_v2_tensor([65, 3, 8, 8], 65 * 192), Limits(), SPEC)
    with pytest.raises(RequestError, match=r"shape \[2, 3, 8, 8\] needs 384 values, 'data' holds 192"):
        parse_v2(_v2_tensor([2, 3, 8, 8], 192), Limits(), SPEC)
    assert parse_v2(_v2_tensor([1, 3, 8, 8], 192), Limits(), SPEC).tensor.shape == (1, 3, 8, 8)


def _http_request(method: str = "POST", path: str = "/v2/models/m/infer", rid: str | None = None) -> object:
    from starlette.requests import Request

    headers = [(b"x-request-id", rid.encode())] if rid else []
    return Request({"type": "http", "method": method, "path": path, "headers": headers, "query_string": b""})


def test_client_errors_are_one_warning_line_and_server_errors_keep_their_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import_kserve()
    from kserve.errors import InferenceError, InvalidInput, ModelNotFound

    from texinspect.serving.http_errors import UnsupportedMediaType, kserve_error_handler

    def answer(exc: Exception, rid: str | None = "r-1") -> tuple[int, dict, list[logging.LogRecord]]:
        caplog.clear()
        try:
            raise exc
        except Exception as raised:  # a real traceback, as in the server
            response = asyncio.run(kserve_error_handler(_http_request(rid=rid), raised))
        return response.status_code, json.loads(response.body), list(caplog.records)

    with caplog.at_level(logging.INFO):
        for exc, status in (
            (InvalidInput("input 'image': not valid base64\n(line two)"), 400),
            (UnsupportedMediaType("content type 'text/plain' is not supported"), 415),
            (ModelNotFound("nosuch"), 404),
        ):
            code, body, records = answer(exc)
            assert code == status and body == {"error": str(exc)}
            assert len(records) == 1 and records[0].levelno == logging.WARNING and records[0].exc_info is None
            line = records[0].getMessage()
            assert "\n" not in line and line.startswith(f"{status} POST /v2/models/m/infer: ")
            assert line.endswith("[request id r-1]")
        code, body, records = answer(InferenceError("model broke"), rid=None)
        assert code == 500 and body == {"error": "model broke"}
        assert len(records) == 1 and records[0].levelno == logging.ERROR and records[0].exc_info is not None
        assert re.search(r"\[request id [0-9a-f]{16}\]$", records[0].getMessage())  # generated when not sent


def test_unexpected_model_errors_become_a_500_the_server_answers_itself() -> None:
    """An exception without an HTTP status used to reach Starlette's last-resort handler, which
    answers 500 and then closes the keep-alive connection."""
    kserve = import_kserve()
    from kserve.errors import InferenceError, InvalidInput
    from kserve.model_repository import ModelRepository

    from texinspect.serving.dataplane import StrictDataPlane

    class Broken(kserve.Model):
        def __init__(self, name: str, error: Exception) -> None:
            super().__init__(name)
            self.error = error
            self.ready = True

        async def predict(self, payload: object, headers: object = None) -> object:
            raise self.error

    registry = ModelRepository()
    registry.update(Broken("bug", ValueError("cannot reshape array")))
    registry.update(Broken("bad", InvalidInput("input 'x': wrong")))
    plane = StrictDataPlane(model_registry=registry)
    with pytest.raises(InferenceError, match=r"internal error in model 'bug' \(ValueError\)") as err:
        asyncio.run(plane.infer("bug", {"instances": []}))
    assert isinstance(err.value.__cause__, ValueError)  # the traceback the log shows
    with pytest.raises(InvalidInput, match="input 'x': wrong"):  # errors with a status keep it
        asyncio.run(plane.infer("bad", {"instances": []}))


def test_v2_raw_bodies_must_be_the_binary_extension_and_fit_their_sizes() -> None:
    from texinspect.serving.dataplane import check_v2_body
    from texinspect.serving.http_errors import UnsupportedMediaType

    import_kserve()
    from kserve.errors import InvalidInput

    with pytest.raises(UnsupportedMediaType, match="content type 'text/plain' is not supported for V2"):
        check_v2_body(b'{"inputs": []}', {"content-type": "text/plain"})
    header = json.dumps(
        {"inputs": [{"name": "t", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 16}}]}
    ).encode()
    length = {"inference-header-content-length": str(len(header))}
    check_v2_body(header + bytes(16), length)
    with pytest.raises(InvalidInput, match="binary_data_size is 16 bytes, but only 15 bytes of the body are left"):
        check_v2_body(header + bytes(15), length)
    with pytest.raises(InvalidInput, match="bytes of JSON, but the body holds"):
        check_v2_body(header, {"inference-header-content-length": str(len(header) + 1)})
    with pytest.raises(InvalidInput, match="expected the JSON part's length in bytes, got 'x'"):
        check_v2_body(header, {"inference-header-content-length": "x"})


def test_large_decodes_hand_freed_heap_back_to_the_os(tmp_path: Path) -> None:
    """A 6000x6000 16-bit PNG raised the server's RSS by ~160 MB for good: free pages kept in glibc's
    per-thread arenas of the I/O threads (issue 20). The predictor's decode now trims them."""
    import io

    import serving_toy_family as toy
    from PIL import Image

    from texinspect.data.images import declared_pixels
    from texinspect.models import register
    from texinspect.serving.predictor import TexinspectModel

    register(toy.FAMILY, toy.MODULE)

    ramp = np.tile(np.linspace(0, 65535, 6000).astype(np.uint16), (6000, 1))
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")  # compresses to ~0.6 MB, decodes to 36 M pixels
    del ramp
    assert declared_pixels(buf.getvalue()) == 36_000_000 and declared_pixels(b"not an image") == 0
    model = TexinspectModel("toy", toy.write_model(tmp_path / "toy", size=32), device="cpu")
    model.load()
    parsed = parse_v1({"instances": [{"image_b64": base64.b64encode(buf.getvalue()).decode()}]}, Limits(), model.spec)

    def rss_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        pytest.skip("no /proc/self/status here")

    try:
        model._io_pool.submit(model._decode, parsed).result()  # first one: pools and buffers settle
        before = rss_mb()
        for _ in range(4):
            assert model._io_pool.submit(model._decode, parsed).result().shape == (1, 3, 32, 32)
        grown = rss_mb() - before
    finally:
        model.stop()
    assert grown < 40, f"RSS grew by {grown:.0f} MB over 4 decodes of a 36 M-pixel image"

"""Request parsing for the two KServe protocols (V1 and V2 / Open Inference), with no model inside.

V1  ``POST /v1/models/<name>:predict``::

    {"instances": [{"image_b64": "<base64 image file>"}, ...],
     "parameters": {"return_map": true, "return_mask": true, "mode": "full"}}

    -> {"predictions": [{"score": .., "is_defect": .., "threshold": .., "level": "pixel",
                         "anomaly_map_png": "<base64 16-bit PNG>", "anomaly_map_range": [lo, hi],
                         "defect_mask_png": "<base64 PNG>"}, ...]}

V2 / Open Inference ``POST /v2/models/<name>/infer``: one input, either ``image`` (BYTES, shape
[N], each element a base64-encoded image file) or ``image_tensor`` (FP32, shape [N, C, H, W] in
[0, 1] at the model's size); for an FMR-Net edge split, the feature tensors ``latent``,
``skip3``, ``skip4`` (FP32, see ``texinspect.serving.edge``) beside one of those two. Request
``parameters`` take the same keys as V1; the ``outputs`` list may name any of :data:`V2_OUTPUTS`
instead.

Every problem raises :class:`RequestError` with a message that names the field and what was
expected; the predictor turns it into HTTP 400. Tensor shapes are checked with Python's exact
integers, per dimension and in total, before anything is allocated from them (numpy's int64
product wraps: ``[2**52 + 1, 3, 64, 64]`` "needs" 12,288 values).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from texinspect.serving.encoding import RequestError, decode_b64

MODES = ("full", "fast", "multilevel")
V1_INSTANCE_KEYS = ("image_b64",)
OPTION_KEYS = ("return_map", "return_mask", "return_map_values", "mode")
# Request parameters kserve itself reads (binary outputs); accepted and passed through.
PASSTHROUGH_PARAMETERS = ("binary_data_output",)
INPUT_BYTES = "image"
INPUT_TENSOR = "image_tensor"
MAX_DIMENSION = 1 << 20  # no axis of an accepted tensor comes near this (batch <= max_images, sides = model's)
# V2 output name -> what it holds; requesting one by name switches it on.
V2_OUTPUTS: dict[str, str] = {
    "score": "FP32 [N] image score at the level used",
    "is_defect": "BOOL [N] score >= threshold (absent when the model has no threshold)",
    "threshold": "FP32 [N] threshold applied to each image",
    "level": "BYTES [N] 'pixel' (full map) or 'patch' (FMR-Net early exit)",
    "patch_score": "FP32 [N] largest patch-level score (modes fast, multilevel)",
    "patch_scores": "FP32 [N, nH, nW] patch-level scores (modes fast, multilevel)",
    "anomaly_map_png": "BYTES [N] base64 16-bit PNG of the map ('' where no pixel map was computed)",
    "anomaly_map_range": "FP32 [N, 2] min and max that the PNG's 0 and 65535 stand for",
    "defect_mask_png": "BYTES [N] base64 8-bit PNG, 255 where map >= pixel threshold",
    "anomaly_map": "FP32 [N, H, W] the anomaly map itself (mode full only)",
}


@dataclass(frozen=True)
class Limits:
    """What one request may hold; larger inputs are refused before they cost memory."""

    max_images: int = 64
    max_image_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 36_000_000  # per decoded image: refuses decompression bombs from the header


@dataclass(frozen=True)
class Options:
    """Per-request switches."""

    return_map: bool = False
    return_mask: bool = False
    return_map_values: bool = False
    mode: str = "full"


@dataclass(frozen=True)
class InputSpec:
    """What the served model accepts: image geometry, modes, and edge feature tensors."""

    channels: int
    size: int
    modes: tuple[str, ...] = ("full",)
    features: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # name -> per-image shape


@dataclass
class ParsedRequest:
    """A validated request: images as ``encoded`` files or a ``tensor``; ``features`` for an edge split."""

    protocol: str  # "v1" | "v2"
    options: Options
    encoded: list[bytes] | None = None
    tensor: np.ndarray | None = None  # (N, C, H, W) float32 in [0, 1]
    features: dict[str, np.ndarray] | None = None  # name -> (N, ...) float32
    request_id: str | None = None
    outputs: tuple[str, ...] | None = None  # V2: names asked for in "outputs"
    passthrough: dict[str, Any] = field(default_factory=dict)
    images: Any = None  # filled by the predictor: the decoded (N, C, H, W) batch

    @property
    def count(self) -> int:
        if self.encoded is not None:
            return len(self.encoded)
        assert self.tensor is not None
        return int(self.tensor.shape[0])


# --------------------------------------------------------------------------- options


def parse_options(params: Any, where: str, spec: InputSpec) -> tuple[Options, dict[str, Any]]:
    if params is None:
        return Options(), {}
    if not isinstance(params, Mapping):
        raise RequestError(f"{where}: expected an object, got {type(params).__name__}")
    unknown = sorted(set(params) - set(OPTION_KEYS) - set(PASSTHROUGH_PARAMETERS))
    if unknown:
        raise RequestError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(OPTION_KEYS)})")
    flags = {}
    for key in ("return_map", "return_mask", "return_map_values"):
        value = params.get(key, False)
        if not isinstance(value, bool):
            raise RequestError(f"{where}.{key}: expected true or false, got {value!r}")
        flags[key] = value
    mode = params.get("mode", "full")
    if mode not in MODES:
        raise RequestError(f"{where}.mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if mode not in spec.modes:
        raise RequestError(
            f"{where}.mode: '{mode}' is not available for this model (available: {', '.join(spec.modes)})"
        )
    if flags["return_map_values"] and mode != "full":
        raise RequestError(f"{where}.return_map_values: only available with mode 'full', not '{mode}'")
    passthrough = {k: params[k] for k in PASSTHROUGH_PARAMETERS if k in params}
    return Options(mode=mode, **flags), passthrough


def _check_count(n: int, where: str, limits: Limits) -> None:
    if n == 0:
        raise RequestError(f"{where}: no images in the request (expected at least 1)")
    if n > limits.max_images:
        raise RequestError(f"{where}: {n} images in one request, over the limit of {limits.max_images}")


# --------------------------------------------------------------------------- V1


def parse_v1(body: Any, limits: Limits, spec: InputSpec) -> ParsedRequest:
    """V1 body (dict, or raw bytes when the client sent no JSON content type) -> ParsedRequest."""
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"request body is not valid JSON ({exc})") from None
    if not isinstance(body, Mapping):
        raise RequestError(
            f'request body must be a JSON object like {{"instances": [...]}}, got {type(body).__name__}'
        )
    unknown = sorted(set(body) - {"instances", "parameters"})
    if unknown:
        raise RequestError(
            f"request body: unknown key '{unknown[0]}' (expected 'instances' and optional 'parameters')"
        )
    if "instances" not in body:
        raise RequestError("request body: 'instances' is missing (expected a list of {\"image_b64\": ...})")
    instances = body["instances"]
    if not isinstance(instances, list):
        raise RequestError(f"instances: expected a list, got {type(instances).__name__}")
    _check_count(len(instances), "instances", limits)
    options, passthrough = parse_options(body.get("parameters"), "parameters", spec)
    encoded: list[bytes] = []
    for i, inst in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(inst, Mapping):
            raise RequestError(f'{where}: expected an object {{"image_b64": ...}}, got {type(inst).__name__}')
        extra = sorted(set(inst) - set(V1_INSTANCE_KEYS))
        if extra:
            raise RequestError(f"{where}: unknown key '{extra[0]}' (expected 'image_b64')")
        if "image_b64" not in inst:
            raise RequestError(f"{where}: 'image_b64' is missing")
        encoded.append(decode_b64(inst["image_b64"], f"{where}.image_b64", limits.max_image_bytes))
    return ParsedRequest("v1", options, encoded=encoded, passthrough=passthrough)


# --------------------------------------------------------------------------- V2


def _shape(inp: Any) -> list[int]:
    """The declared shape as Python ints, each axis in [0, MAX_DIMENSION]."""
    shape = inp.shape
    if not isinstance(shape, (list, tuple)) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in shape
    ):
        raise RequestError(f"input '{inp.name}': shape must be a list of integers, got {shape!r}")
    if any(s < 0 for s in shape):
        raise RequestError(f"input '{inp.name}': shape {list(shape)} has a negative size")
    for axis, size in enumerate(shape):
        if size > MAX_DIMENSION:
            raise RequestError(
                f"input '{inp.name}': shape {list(shape)}: axis {axis} is {size}, over the limit of {MAX_DIMENSION}"
            )
    return [int(s) for s in shape]


def _flat_data(inp: Any) -> list[Any]:
    data = inp.data
    if data is None:
        raise RequestError(f"input '{inp.name}': 'data' is missing")
    if isinstance(data, np.ndarray):
        return list(data.ravel())
    if not isinstance(data, list):
        raise RequestError(f"input '{inp.name}': 'data' must be a list, got {type(data).__name__}")
    out: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative flatten: a hostile deeply nested list cannot blow the recursion limit
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _float_tensor(inp: Any, expected: Sequence[int | None], where: str, limits: Limits) -> np.ndarray:
    """FP32 input -> float32 array of ``expected`` shape (None = any size, first axis = batch).

    The batch axis is held to ``limits.max_images`` and the value count is the exact product,
    both before ``data`` becomes an array.
    """
    if inp.datatype != "FP32":
        raise RequestError(f"{where}: datatype must be FP32, got {inp.datatype}")
    shape = _shape(inp)
    if len(shape) != len(expected) or any(
        e is not None and s != e for s, e in zip(shape, expected, strict=True)
    ):
        want = ", ".join("N" if e is None else str(e) for e in expected)
        raise RequestError(f"{where}: shape must be [{want}], got {shape}")
    _check_count(shape[0], where, limits)
    if inp.data is None:
        raise RequestError(f"{where}: 'data' is missing")
    try:
        values = np.asarray(inp.data)
    except (ValueError, TypeError):
        raise RequestError(f"{where}: 'data' is not a regular (non-ragged) list of numbers") from None
    if values.dtype.kind not in "iuf":
        found = {"b": "true/false values", "U": "strings", "S": "strings"}.get(
            values.dtype.kind, "non-numeric values"
        )
        raise RequestError(f"{where}: 'data' must hold numbers only, found {found}")
    count = math.prod(shape)  # exact: Python integers do not wrap
    if values.size != count:
        raise RequestError(f"{where}: shape {shape} needs {count} values, 'data' holds {values.size}")
    array = values.astype(np.float32).reshape(shape)
    if not np.isfinite(array).all():
        raise RequestError(f"{where}: 'data' holds NaN or infinite values")
    return array


def parse_v2(request: Any, limits: Limits, spec: InputSpec) -> ParsedRequest:
    """kserve ``InferRequest`` -> ParsedRequest."""
    inputs = list(request.inputs or [])
    params = request.parameters
    if params is not None and not isinstance(params, Mapping):
        params = dict(params)
    options, passthrough = parse_options(params, "parameters", spec)
    outputs = _requested_outputs(request)
    options = _options_from_outputs(options, outputs, spec)
    if not inputs:
        raise RequestError(f"inputs: empty (expected one input named '{INPUT_BYTES}' or '{INPUT_TENSOR}')")
    names = [inp.name for inp in inputs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise RequestError(f"inputs: '{dup}' given twice")
    feature_names = set(spec.features)
    if feature_names and feature_names & set(names):
        return _parse_features(inputs, limits, spec, options, request, outputs, passthrough)
    if len(inputs) != 1:
        raise RequestError(
            f"inputs: expected exactly one input, got {len(inputs)} ({', '.join(map(str, names))})"
        )
    inp = inputs[0]
    if inp.name in (INPUT_BYTES, INPUT_TENSOR):
        return _parse_image_input(inp, limits, spec, options, request, outputs, passthrough)
    known = [INPUT_BYTES, INPUT_TENSOR]
    if feature_names:
        known.append("edge features " + "+".join(sorted(feature_names)) + " with an image")
    raise RequestError(f"input '{inp.name}': unknown input name (expected one of: {', '.join(known)})")


def _parse_bytes(
    inp: Any, limits: Limits, options: Options, request: Any, outputs: Any, passthrough: Any
) -> ParsedRequest:
    where = f"input '{INPUT_BYTES}'"
    if inp.datatype != "BYTES":
        raise RequestError(
            f"{where}: datatype must be BYTES (base64-encoded image files), got {inp.datatype}"
        )
    shape = _shape(inp)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise RequestError(f"{where}: shape must be [N] (one encoded image per element), got {shape}")
    flat = _flat_data(inp)
    if len(flat) != shape[0]:
        raise RequestError(f"{where}: shape {shape} says {shape[0]} images, 'data' holds {len(flat)}")
    _check_count(len(flat), where, limits)
    encoded = [decode_b64(v, f"{where}[{i}]", limits.max_image_bytes) for i, v in enumerate(flat)]
    return ParsedRequest(
        "v2", options, encoded=encoded, request_id=request.id, outputs=outputs, passthrough=passthrough
    )


def _parse_features(
    inputs: list[Any],
    limits: Limits,
    spec: InputSpec,
    options: Options,
    request: Any,
    outputs: Any,
    passthrough: Any,
) -> ParsedRequest:
    """Edge split: the feature tensors plus the image (``image`` or ``image_tensor``)."""
    by_name = {inp.name: inp for inp in inputs}
    missing = [n for n in spec.features if n not in by_name]
    if missing:
        raise RequestError(
            f"inputs: edge features need {', '.join(spec.features)} plus the image; '{missing[0]}' is missing"
        )
    images = [n for n in by_name if n not in spec.features]
    if images not in ([INPUT_BYTES], [INPUT_TENSOR]):
        raise RequestError(
            f"inputs: edge features need exactly one image input ('{INPUT_BYTES}' or '{INPUT_TENSOR}') beside "
            f"{', '.join(spec.features)}, got {images or 'none'}"
        )
    if options.mode != "full":
        raise RequestError("parameters.mode: edge features always give the pixel-level map (use mode 'full')")
    features: dict[str, np.ndarray] = {}
    for name, per_image in spec.features.items():
        features[name] = _float_tensor(by_name[name], (None, *per_image), f"input '{name}'", limits)
    counts = {name: arr.shape[0] for name, arr in features.items()}
    parsed = _parse_image_input(by_name[images[0]], limits, spec, options, request, outputs, passthrough)
    counts[images[0]] = parsed.count
    if len(set(counts.values())) != 1:
        raise RequestError(f"inputs: the inputs hold different numbers of images: {counts}")
    parsed.features = features
    return parsed


def _parse_image_input(
    inp: Any, limits: Limits, spec: InputSpec, options: Options, request: Any, outputs: Any, passthrough: Any
) -> ParsedRequest:
    if inp.name == INPUT_BYTES:
        return _parse_bytes(inp, limits, options, request, outputs, passthrough)
    arr = _float_tensor(inp, (None, spec.channels, spec.size, spec.size), f"input '{INPUT_TENSOR}'", limits)
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise RequestError(
            f"input '{INPUT_TENSOR}': values must lie in [0, 1], got min {arr.min():.4g} and max {arr.max():.4g}"
        )
    return ParsedRequest(
        "v2", options, tensor=arr, request_id=request.id, outputs=outputs, passthrough=passthrough
    )


def _requested_outputs(request: Any) -> tuple[str, ...] | None:
    requested = getattr(request, "request_outputs", None)
    if not requested:
        return None
    names = tuple(out.name for out in requested)
    unknown = [n for n in names if n not in V2_OUTPUTS]
    if unknown:
        raise RequestError(f"outputs: unknown output '{unknown[0]}' (known: {', '.join(V2_OUTPUTS)})")
    return names


def _options_from_outputs(options: Options, outputs: tuple[str, ...] | None, spec: InputSpec) -> Options:
    """Naming an output in ``outputs`` switches on what it needs."""
    if not outputs:
        return options
    wants_map = options.return_map or bool({"anomaly_map_png", "anomaly_map_range"} & set(outputs))
    wants_values = options.return_map_values or "anomaly_map" in outputs
    if wants_values and options.mode != "full":
        raise RequestError(f"outputs: 'anomaly_map' is only available with mode 'full', not '{options.mode}'")
    if {"patch_score", "patch_scores"} & set(outputs) and options.mode == "full":
        raise RequestError("outputs: patch scores need parameters.mode 'fast' or 'multilevel'")
    return Options(
        return_map=wants_map,
        return_mask=options.return_mask or "defect_mask_png" in outputs,
        return_map_values=wants_values,
        mode=options.mode,
    )

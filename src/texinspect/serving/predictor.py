"""The KServe predictor: a ``kserve.Model`` that serves one texinspect model artifact.

One class answers both protocols (kserve hands V1 bodies over as dicts and V2 bodies as
``InferRequest``): ``preprocess`` validates the request and decodes images on a small thread pool,
``predict`` runs the detector (through the micro-batcher, so concurrent requests share forward
passes) on one model thread, ``postprocess`` builds the V1 dict or the V2 ``InferResponse``.
Bad input raises ``kserve.errors.InvalidInput`` (HTTP 400) with the message of the
``RequestError``/``DataError`` that names the field; the server keeps running. Images that decode
to NaN or infinite pixels are bad input too (``data.images.check_finite``), never a score.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from texinspect.data.images import declared_pixels, decode_image_bytes
from texinspect.devices import resolve_device
from texinspect.errors import DataError
from texinspect.models.artifact import load_detector
from texinspect.models.base import MAP_SCORE_RULE
from texinspect.serving.batching import MicroBatcher
from texinspect.serving.edge import cloud_half_for
from texinspect.serving.encoding import RequestError, encode_b64, map_to_png, mask_to_png
from texinspect.serving.engine import ImageResult, InferenceEngine
from texinspect.serving.kserve_import import import_kserve
from texinspect.serving.memory import TRIM_ABOVE_PIXELS, release_free_heap
from texinspect.serving.model_uri import resolve_model_uri
from texinspect.serving.protocol import (
    INPUT_BYTES,
    INPUT_TENSOR,
    InputSpec,
    Limits,
    ParsedRequest,
    parse_v1,
    parse_v2,
)

kserve = import_kserve()
from kserve.errors import InvalidInput  # noqa: E402
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse  # noqa: E402

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching of concurrent requests (see ``texinspect.serving.batching``).

    Off by default: on CPU it helped small models and did not help (RB-AE) or hurt (FMR-Net) the
    256 px ones (docs/serving.md); ``texinspect serve --max-batch N`` turns it on.
    """

    enabled: bool = False
    max_batch: int = 8
    max_wait_ms: float = 0.0


class TexinspectModel(kserve.Model):
    """Serves the model at ``model_uri`` (folder, models:/NAME@ALIAS, runs:/..., s3://...) as ``name``."""

    def __init__(
        self,
        name: str,
        model_uri: str | Path,
        device: str = "auto",
        limits: Limits | None = None,
        batching: BatchingConfig | None = None,
        cache_dir: str | Path | None = None,
        tracking_uri: str | None = None,
        io_threads: int = 2,
    ) -> None:
        super().__init__(name)
        self.model_uri = str(model_uri)
        self.device = resolve_device(device)
        self.limits = limits or Limits()
        self.batching = batching or BatchingConfig()
        self.cache_dir = cache_dir
        self.tracking_uri = tracking_uri
        self.io_threads = io_threads
        self.model_dir: Path | None = None
        self.engine: InferenceEngine | None = None
        self.edge = None  # texinspect.serving.edge.CloudHalf when the model supports the edge split
        self.spec: InputSpec | None = None
        self.batcher: MicroBatcher | None = None
        self._model_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._io_pool: concurrent.futures.ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> bool:
        self.model_dir = resolve_model_uri(self.model_uri, self.cache_dir, self.tracking_uri)
        detector, card = load_detector(self.model_dir, self.device)
        self.engine = InferenceEngine(detector, card, self.device)
        self.edge = cloud_half_for(detector, card, self.device)
        self.spec = InputSpec(
            channels=card.channels,
            size=card.image_size,
            modes=self.engine.modes,
            features=dict(self.edge.feature_shapes) if self.edge is not None else {},
        )
        self._model_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-model")
        self._io_pool = concurrent.futures.ThreadPoolExecutor(
            self.io_threads, thread_name_prefix=f"{self.name}-io"
        )
        if self.batching.enabled:
            self.batcher = MicroBatcher(
                self.engine.run, self._model_pool, self.batching.max_batch, self.batching.max_wait_ms
            )
        log.info(
            "model '%s' loaded from %s (%s) on %s", self.name, self.model_uri, self.model_dir, self.device
        )
        self.ready = True
        return self.ready

    def stop(self) -> None:
        for pool in (self._model_pool, self._io_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self.ready = False

    # ------------------------------------------------------------------ request path

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> ParsedRequest:
        assert self.engine is not None and self.spec is not None, "model not loaded"
        try:
            if isinstance(payload, InferRequest):
                parsed = parse_v2(payload, self.limits, self.spec)
            else:
                parsed = parse_v1(payload, self.limits, self.spec)
            self._check_outputs_available(parsed)
            if parsed.encoded is not None:
                loop = asyncio.get_running_loop()
                parsed.images = await loop.run_in_executor(self._io_pool, self._decode, parsed)
            elif parsed.tensor is not None:
                parsed.images = torch.from_numpy(parsed.tensor)
        except (RequestError, DataError) as exc:
            raise InvalidInput(str(exc)) from None
        return parsed

    async def predict(
        self, payload: ParsedRequest, headers: dict[str, str] | None = None, response_headers: Any = None
    ) -> tuple[ParsedRequest, list[ImageResult]]:
        assert self.engine is not None
        loop = asyncio.get_running_loop()
        if payload.features is not None:
            assert self.edge is not None
            results = await loop.run_in_executor(
                self._model_pool, self._run_features, payload.images, payload.features
            )
        elif self.batcher is not None:
            results = await self.batcher.submit(payload.images, payload.options.mode)
        else:
            results = await loop.run_in_executor(
                self._model_pool, self.engine.run, payload.images, payload.options.mode
            )
        return payload, results

    async def postprocess(
        self, result: Any, headers: dict[str, str] | None = None, response_headers: Any = None
    ) -> dict[str, Any] | InferResponse:
        parsed, results = result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io_pool, self._respond, parsed, results)

    # ------------------------------------------------------------------ helpers

    def _decode(self, parsed: ParsedRequest) -> torch.Tensor:
        """Decode on this I/O thread; after large images, hand the freed heap back (``memory``)."""
        assert self.engine is not None and parsed.encoded is not None
        card = self.engine.card
        arrays = []
        try:
            for i, data in enumerate(parsed.encoded):
                name = f"instances[{i}].image_b64" if parsed.protocol == "v1" else f"input '{INPUT_BYTES}'[{i}]"
                arrays.append(
                    decode_image_bytes(data, card.image_size, card.channels, self.limits.max_pixels, name=name)
                )
            return torch.from_numpy(np.stack(arrays))
        finally:
            if sum(declared_pixels(data) for data in parsed.encoded) >= TRIM_ABOVE_PIXELS:
                release_free_heap()

    def _run_features(self, images: torch.Tensor, features: dict[str, np.ndarray]) -> list[ImageResult]:
        assert self.edge is not None and self.engine is not None
        tensors = {k: torch.from_numpy(v) for k, v in features.items()}
        patch_rule = self.engine.card.score_rule != MAP_SCORE_RULE
        # computed once where used: the patch image score and the map's weighting share them
        windows = self.edge.window_scores(tensors) if patch_rule or self.edge.weights_by_windows else None
        maps = self.edge.anomaly_map(images, tensors, windows)
        scores = windows.amax(dim=1) if windows is not None and patch_rule else None
        return self.engine.run_maps(maps, scores)

    def _check_outputs_available(self, parsed: ParsedRequest) -> None:
        assert self.engine is not None
        card = self.engine.card
        wants_mask = parsed.options.return_mask
        if wants_mask and card.pixel_threshold is None:
            raise RequestError("parameters.return_mask: this model has no pixel threshold, so no defect mask")
        if parsed.outputs and {"is_defect", "threshold"} & set(parsed.outputs):
            level_threshold = card.threshold if parsed.options.mode == "full" else self.engine.patch_threshold
            if level_threshold is None:
                raise RequestError(f"outputs: this model has no threshold for mode '{parsed.options.mode}'")

    def _respond(self, parsed: ParsedRequest, results: list[ImageResult]) -> dict[str, Any] | InferResponse:
        if parsed.protocol == "v1":
            return {"predictions": [self._v1_prediction(r, parsed) for r in results]}
        return self._v2_response(parsed, results)

    def _mask(self, amap: np.ndarray) -> np.ndarray:
        assert self.engine is not None and self.engine.card.pixel_threshold is not None
        return amap >= self.engine.card.pixel_threshold

    def _v1_prediction(self, res: ImageResult, parsed: ParsedRequest) -> dict[str, Any]:
        opts = parsed.options
        out: dict[str, Any] = {
            "score": res.score,
            "is_defect": res.is_defect,
            "threshold": res.threshold,
            "level": res.level,
        }
        if opts.mode != "full":
            out["patch_score"] = res.patch_score
            out["patch_scores"] = res.patch_scores.tolist() if res.patch_scores is not None else None
        if opts.return_map:
            if res.amap is not None:
                png, lo, hi = map_to_png(res.amap)
                out["anomaly_map_png"], out["anomaly_map_range"] = encode_b64(png), [lo, hi]
            else:
                out["anomaly_map_png"], out["anomaly_map_range"] = None, None
        if opts.return_mask:
            out["defect_mask_png"] = (
                encode_b64(mask_to_png(self._mask(res.amap))) if res.amap is not None else None
            )
        if opts.return_map_values:
            out["anomaly_map"] = res.amap.tolist() if res.amap is not None else None
        return out

    def _v2_response(self, parsed: ParsedRequest, results: list[ImageResult]) -> InferResponse:
        assert self.engine is not None
        opts = parsed.options
        has_threshold = all(r.threshold is not None for r in results)
        names = list(parsed.outputs) if parsed.outputs else self._default_outputs(parsed, has_threshold)
        outputs = []
        for name in names:
            arr = self._v2_output(name, results)
            datatype = {"O": "BYTES", "b": "BOOL"}.get(arr.dtype.kind, "FP32")
            outputs.append(InferOutput(name=name, shape=list(arr.shape), datatype=datatype, data=arr))
        params: dict[str, Any] = {"family": self.engine.card.family, "mode": opts.mode}
        if self.engine.card.pixel_threshold is not None:
            params["pixel_threshold"] = float(self.engine.card.pixel_threshold)
        return InferResponse(
            response_id=parsed.request_id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=outputs,
            parameters=params,
            use_binary_outputs=bool(parsed.passthrough.get("binary_data_output", False)),
        )

    def _v2_output(self, name: str, results: list[ImageResult]) -> np.ndarray:
        """One V2 output tensor over the batch (names were checked by ``protocol.parse_v2``)."""
        if name == "score":
            return np.array([r.score for r in results], dtype=np.float32)
        if name == "is_defect":
            return np.array([bool(r.is_defect) for r in results], dtype=bool)
        if name == "threshold":
            return np.array([np.nan if r.threshold is None else r.threshold for r in results], dtype=np.float32)
        if name == "level":
            return np.array([r.level for r in results], dtype=np.object_)
        if name == "patch_score":
            return np.array([r.patch_score for r in results], dtype=np.float32)
        if name == "patch_scores":
            return np.stack([r.patch_scores for r in results]).astype(np.float32)
        if name in ("anomaly_map_png", "anomaly_map_range"):
            encoded = [("", (0.0, 0.0)) if r.amap is None else _png_and_range(r.amap) for r in results]
            if name == "anomaly_map_png":
                return np.array([png for png, _ in encoded], dtype=np.object_)
            return np.array([rng for _, rng in encoded], dtype=np.float32).reshape(len(results), 2)
        if name == "defect_mask_png":
            return np.array(
                [encode_b64(mask_to_png(self._mask(r.amap))) if r.amap is not None else "" for r in results],
                dtype=np.object_,
            )
        if name == "anomaly_map":
            return np.stack([r.amap for r in results]).astype(np.float32)
        raise InvalidInput(f"outputs: unknown output '{name}'")  # pragma: no cover - validated in parse_v2

    @staticmethod
    def _default_outputs(parsed: ParsedRequest, has_threshold: bool) -> list[str]:
        opts = parsed.options
        names = ["score"] + (["is_defect", "threshold"] if has_threshold else []) + ["level"]
        if opts.mode != "full":
            names += ["patch_score", "patch_scores"]
        if opts.return_map:
            names += ["anomaly_map_png", "anomaly_map_range"]
        if opts.return_mask:
            names.append("defect_mask_png")
        if opts.return_map_values:
            names.append("anomaly_map")
        return names

    # ------------------------------------------------------------------ metadata (V2 GET /v2/models/<name>)

    def get_input_types(self) -> list[dict[str, Any]]:
        assert self.spec is not None
        types = [
            {"name": INPUT_BYTES, "datatype": "BYTES", "shape": [-1]},
            {
                "name": INPUT_TENSOR,
                "datatype": "FP32",
                "shape": [-1, self.spec.channels, self.spec.size, self.spec.size],
            },
        ]
        for name, shape in self.spec.features.items():
            types.append({"name": name, "datatype": "FP32", "shape": [-1, *shape]})
        return types

    def get_output_types(self) -> list[dict[str, Any]]:
        assert self.spec is not None and self.engine is not None
        s = self.spec.size
        types = [
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "is_defect", "datatype": "BOOL", "shape": [-1]},
            {"name": "threshold", "datatype": "FP32", "shape": [-1]},
            {"name": "level", "datatype": "BYTES", "shape": [-1]},
            {"name": "anomaly_map_png", "datatype": "BYTES", "shape": [-1]},
            {"name": "anomaly_map_range", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "defect_mask_png", "datatype": "BYTES", "shape": [-1]},
            {"name": "anomaly_map", "datatype": "FP32", "shape": [-1, s, s]},
        ]
        if "fast" in self.spec.modes:
            types += [
                {"name": "patch_score", "datatype": "FP32", "shape": [-1]},
                {"name": "patch_scores", "datatype": "FP32", "shape": [-1, -1, -1]},
            ]
        return types


def _png_and_range(amap: np.ndarray) -> tuple[str, tuple[float, float]]:
    """An anomaly map as base64 PNG and the (low, high) values its grey levels span."""
    png, lo, hi = map_to_png(amap)
    return encode_b64(png), (lo, hi)

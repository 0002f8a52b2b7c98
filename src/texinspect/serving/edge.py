"""Edge-cloud split of FMR-Net (multilevel detection with model partitioning, paper Sec. IV-F, V).

The edge runs the encoder and the memory bank: for every sliding window of an image it gets the
latent code z, the patch score (distance of z to the nearest memory entry) and the skip maps the
decoder's GFRMs read (E3 and E4 in the paper, ``fmrnet.gfrm_levels``). Images whose windows all stay under the patch threshold exit early with the
patch-level result. For a flagged image the edge uploads the intermediate features (V2 FP32
tensors ``latent``, ``skip3``, ``skip4``, ...) and the image itself (the multimodal map compares the
image with its reconstruction, so the cloud needs it), and the KServe endpoint runs the rest:
memory addressing, GFRM + decoder, stitching and the multimodal map.

Edge artifact: one TorchScript file (``torch.jit.load``; only torch is needed on the device)
holding the encoder, the latent projection and the memory bank, with the preprocessing and the
patch threshold in an extra file ``texinspect_edge.json``. Split inference equals full inference
(tests/serving check it), and :func:`upload_size` reports the bytes a flagged image costs.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from texinspect import __version__
from texinspect.data.images import decode_image_bytes
from texinspect.errors import ModelError
from texinspect.models.artifact import ModelCard, load_detector
from texinspect.models.base import Detector, resize_maps
from texinspect.models.fmrnet.cmfm import nearest_entry_distance
from texinspect.models.fmrnet.network import FMRNet, work_size
from texinspect.models.fmrnet.patches import extract_patches, make_grid, patch_grid_values, stitch

META_FILE = "texinspect_edge.json"
LATENT = "latent"


def skip_levels(detector: Detector) -> tuple[int, ...]:
    """Encoder layers (1-based) whose maps feed the decoder's GFRMs: the paper's E3 and E4."""
    return tuple(int(v) for v in getattr(detector, "skip_levels", (3, 4)))


def feature_names(detector: Detector) -> list[str]:
    """``latent`` then ``skip<level>`` for every skip level, the order the edge module returns them."""
    return [LATENT, *(f"skip{level}" for level in skip_levels(detector))]


def _is_splittable(detector: Detector) -> bool:
    return (
        all(hasattr(detector, a) for a in ("encode", "decode", "memory", "cfg"))
        and detector.family == "fmrnet"
    )


def feature_shapes(detector: Detector, image_size: int) -> dict[str, tuple[int, ...]]:
    """Per-image shapes of the uploaded features: (windows, ...) for an image_size x image_size image."""

    cfg = detector.cfg  # type: ignore[attr-defined]
    side = work_size(cfg, image_size)  # the windows of the image at the network's side
    grid = make_grid(1, side, side, cfg.patch_size, cfg.patch_stride)
    n, p, w = grid.per_image, cfg.patch_size, cfg.widths
    shapes: dict[str, tuple[int, ...]] = {LATENT: (n, int(cfg.latent_dim))}
    for level in skip_levels(detector):
        side = p // 2**level
        shapes[f"skip{level}"] = (n, int(w[level - 1]), side, side)
    return shapes


# --------------------------------------------------------------------------- edge half


class EdgeEncoder(nn.Module):
    """The edge half: images (B, C, H, W) -> (patch scores (B, nH, nW), latent, skip maps...).

    Holds only the encoder, the latent projection and the memory bank (no decoder weights leave
    the cloud); the forward pass calls FMR-Net's own ``encode`` so the two halves cannot drift.
    """

    def __init__(self, net: Detector) -> None:
        super().__init__()
        cfg = net.cfg  # type: ignore[attr-defined]
        self.encoder = net.encoder  # type: ignore[attr-defined]
        self.to_latent = net.to_latent  # type: ignore[attr-defined]
        self.register_buffer("memory", net.memory.detach().clone())  # type: ignore[attr-defined]
        self.cfg = cfg  # for FMRNet.to_work_size (fmrnet.train_size)
        self.patch, self.stride = int(cfg.patch_size), int(cfg.patch_stride)
        self.levels = skip_levels(net)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        images = FMRNet.to_work_size(self, images)  # type: ignore[arg-type]  # uses self.cfg only
        patches, grid = extract_patches(images, self.patch, self.stride)
        feats, z = FMRNet.encode(self, patches)  # type: ignore[arg-type]  # uses self.encoder, self.to_latent
        scores = patch_grid_values(nearest_entry_distance(z, self.memory), grid)
        b = images.shape[0]
        skips = [feats[lv - 1].reshape(b, grid.per_image, *feats[lv - 1].shape[1:]) for lv in self.levels]
        return (scores, z.reshape(b, grid.per_image, -1), *skips)


def export_edge(model_dir: str | Path, out_path: str | Path) -> Path:
    """Trace the edge half of the FMR-Net at ``model_dir`` into a TorchScript file ``out_path``."""
    detector, card = load_detector(model_dir, "cpu")
    if not _is_splittable(detector):
        raise ModelError(f"{model_dir}: edge export needs an FMR-Net model, this one is '{card.family}'")
    if not bool(detector.memory_ready):  # type: ignore[attr-defined]
        raise ModelError(
            f"{model_dir}: the FMR-Net has no memory bank; the edge half needs it for patch scores"
        )
    edge = EdgeEncoder(detector).eval()
    example = torch.rand(2, card.channels, card.image_size, card.image_size)
    with torch.inference_mode(), warnings.catch_warnings():
        # the window grid is computed from H and W in Python: fixed by the card's image size on purpose
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(edge, example, check_trace=False)
    meta = edge_metadata(detector, card)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(traced, str(out), _extra_files={META_FILE: json.dumps(meta, indent=2)})
    return out


def edge_metadata(detector: Detector, card: ModelCard) -> dict[str, Any]:
    threshold = float(detector.patch_threshold)  # type: ignore[attr-defined]
    return {
        "family": card.family,
        "texinspect_version": __version__,
        "model_created": card.created,
        "image_size": card.image_size,
        "channels": card.channels,
        "preprocessing": "texinspect.data.images.decode_image_bytes(data, image_size, channels): "
        "float32 (C, H, W) in [0, 1], bilinear antialiased resize",
        "patch_size": int(detector.cfg.patch_size),  # type: ignore[attr-defined]
        "patch_stride": int(detector.cfg.patch_stride),  # type: ignore[attr-defined]
        "patch_threshold": threshold if np.isfinite(threshold) else None,
        "features": {k: list(v) for k, v in feature_shapes(detector, card.image_size).items()},
    }


@dataclass
class EdgeResult:
    """What the edge knows about a batch: patch scores, which images to upload, and their features."""

    patch_scores: np.ndarray  # (B, nH, nW)
    flagged: np.ndarray  # (B,) bool: some window >= the patch threshold
    features: dict[str, np.ndarray]  # name -> (B, ...) float32


class EdgeRunner:
    """Loads an exported edge artifact and runs it (what an edge device does with torch only)."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        extra = {META_FILE: ""}
        self.module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        self.module.eval()
        self.meta: dict[str, Any] = json.loads(extra[META_FILE])
        self.device = device

    @property
    def patch_threshold(self) -> float | None:
        return self.meta.get("patch_threshold")

    def decode(self, data: bytes, max_pixels: int | None = None) -> np.ndarray:
        return decode_image_bytes(data, self.meta["image_size"], self.meta["channels"], max_pixels)

    @torch.inference_mode()
    def run(self, images: torch.Tensor) -> EdgeResult:
        """Images (B, C, H, W) in [0, 1] at the artifact's size (the trace fixed H and W)."""
        c, s = self.meta["channels"], self.meta["image_size"]
        if images.dim() != 4 or tuple(images.shape[1:]) != (c, s, s):
            raise ValueError(f"edge model expects images (B, {c}, {s}, {s}), got {tuple(images.shape)}")
        scores, *features = self.module(images.to(self.device))
        scores = scores.float().cpu().numpy()
        thr = self.patch_threshold
        flagged = (
            np.ones(len(scores), dtype=bool)
            if thr is None
            else (scores.reshape(len(scores), -1) >= thr).any(axis=1)
        )
        names = list(self.meta["features"])  # latent, then the skip maps, as EdgeEncoder returns them
        feats = {name: t.float().cpu().numpy() for name, t in zip(names, features, strict=True)}
        return EdgeResult(scores, flagged, feats)


def split_request(
    features: dict[str, np.ndarray], encoded_images: list[bytes], parameters: dict[str, Any] | None = None
) -> tuple[bytes, dict[str, str]]:
    """A V2 request body using the binary tensor extension: JSON header, then raw FP32 features.

    The images travel base64-encoded inside the JSON header (kserve 0.21 decodes binary BYTES as
    UTF-8 text, so raw image bytes cannot use the binary part). Returns (body, headers).
    """
    import base64

    inputs: list[dict[str, Any]] = [
        {
            "name": "image",
            "shape": [len(encoded_images)],
            "datatype": "BYTES",
            "data": [base64.b64encode(b).decode("ascii") for b in encoded_images],
        }
    ]
    raw: list[bytes] = []
    for name in features:
        arr = np.ascontiguousarray(features[name], dtype="<f4")
        blob = arr.tobytes()
        raw.append(blob)
        inputs.append(
            {
                "name": name,
                "shape": list(arr.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(blob)},
            }
        )
    header = json.dumps({"inputs": inputs, "parameters": parameters or {}}).encode()
    body = header + b"".join(raw)
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return body, headers


def upload_size(features: dict[str, np.ndarray], encoded_images: list[bytes]) -> dict[str, float]:
    """Bytes per image the edge sends for a flagged image, beside the encoded image alone."""
    n = len(encoded_images)
    body, _ = split_request(features, encoded_images)
    feature_bytes = sum(int(np.asarray(v).size) * 4 for v in features.values())
    return {
        "encoded_image_bytes": sum(len(b) for b in encoded_images) / n,
        "feature_bytes": feature_bytes / n,
        "request_bytes": len(body) / n,
    }


# --------------------------------------------------------------------------- cloud half


class CloudHalf:
    """The cloud half: uploaded features + the image -> the pixel-level anomaly map."""

    def __init__(self, detector: Detector, image_size: int, device: torch.device | str) -> None:
        self.net = detector
        self.image_size = image_size
        self.device = torch.device(device)
        self.feature_shapes = feature_shapes(detector, image_size)

    @property
    def weights_by_windows(self) -> bool:
        """Whether the pixel map needs the window scores (FMR-Net's soft multilevel weighting)."""
        return bool(getattr(self.net, "weights_by_windows", False))

    @torch.inference_mode()
    def window_scores(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, n) distance of every window's uploaded code to its nearest memory entry (the cloud
        holds the same memory bank): the patch-level scores, computed once per request."""

        n = self.feature_shapes[LATENT][0]
        z = features[LATENT].to(self.device)
        b = z.numel() // (n * z.shape[-1])
        return nearest_entry_distance(z.reshape(b * n, -1), self.net.memory).reshape(b, n)  # type: ignore[arg-type]

    def patch_image_scores(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) largest window distance to the memory: FMR-Net's patch image-score rule."""
        return self.window_scores(features).amax(dim=1)

    @torch.inference_mode()
    def anomaly_map(
        self,
        images: torch.Tensor,
        features: dict[str, torch.Tensor],
        window_scores: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The pixel map of full inference; ``window_scores`` (:meth:`window_scores`) are computed
        here when the map is weighted by them and the caller has none."""

        net: Any = self.net
        cfg = net.cfg
        full_size = images.shape[-2:]
        images = net.to_work_size(images.to(self.device))  # the windows' image (fmrnet.train_size)
        b, _, h, w = images.shape
        n = self.feature_shapes["latent"][0]
        z = features[LATENT].to(self.device).reshape(b * n, -1)
        levels = skip_levels(net)
        skips = {
            lv: features[f"skip{lv}"].to(self.device).reshape(b * n, *self.feature_shapes[f"skip{lv}"][1:])
            for lv in levels
        }
        recs = []
        step = max(1, int(cfg.inference_chunk))
        for start in range(0, b * n, step):  # same chunking as FMRNet.reconstruct
            zc = z[start : start + step]
            feats = [zc.new_empty(0)] * 5
            for lv in levels:
                feats[lv - 1] = skips[lv][start : start + step]
            code = net.address(zc)[1] if net.uses_memory else zc
            recs.append(net.decode(feats, code))
        grid = make_grid(b, h, w, cfg.patch_size, cfg.patch_stride)
        full = stitch(torch.cat(recs), grid)[0]
        if not self.weights_by_windows:
            return resize_maps(net.pixel_map(images, full), *full_size)
        if window_scores is None:
            window_scores = self.window_scores(features)
        maps = net.pixel_map(images, full, patch_grid_values(window_scores.flatten(), grid))
        return resize_maps(maps, *full_size)


def cloud_half_for(detector: Detector, card: ModelCard, device: torch.device | str) -> CloudHalf | None:
    """The cloud half when the served model can be split (an FMR-Net with a memory bank), else None."""
    if not _is_splittable(detector):
        return None
    return CloudHalf(detector, card.image_size, device)

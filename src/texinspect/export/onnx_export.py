"""``texinspect export --format onnx``: a model folder as ONNX files that ONNX Runtime runs.

What the field's edge devices and inference servers expect: no Python, no torch.

- ``model.onnx``: the whole detector, ``images`` (B, C, H, W) float32 in [0, 1] at the card's size
  and channels -> ``anomaly_map`` (B, H, W), for both families (RB-AE including its ``pixel_unet``
  segmenter when the model has one, FMR-Net including its memory bank);
- ``edge.onnx`` (FMR-Net only): the edge half of the split (encoder + latent projection + memory
  bank, :class:`texinspect.serving.edge.EdgeEncoder`): ``images`` -> ``patch_scores`` (B, nH, nW),
  ``latent`` and the skip maps the cloud half reads;
- ``texinspect_onnx.json``: preprocessing, thresholds, input/output names and the parity measured
  at export.

Exported with PyTorch's own exporter (``torch.onnx.export``, the torch.export-based one), batch
size dynamic. Every export is checked with ONNX Runtime on random images against the PyTorch
module it came from; the export fails when any output differs by more than
``ATOL + RTOL * |torch|`` (:data:`ATOL`, :data:`RTOL`).
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from texinspect import __version__
from texinspect.errors import ModelError
from texinspect.models.artifact import load_detector
from texinspect.serving.edge import EdgeEncoder, _is_splittable, edge_metadata, feature_names

MODEL_FILE = "model.onnx"
EDGE_FILE = "edge.onnx"
META_FILE = "texinspect_onnx.json"
ATOL = 1e-4  # float32 kernels differ in summation order between the two runtimes
RTOL = 1e-3
CHECK_BATCH = 3  # parity images: a batch size the export never saw (it traces with 2)
MAX_BATCH = 256


@dataclass(frozen=True)
class Parity:
    """Per output: the largest |onnx - torch|, and the largest |onnx - torch| / (ATOL + RTOL |torch|)
    (at most 1 is within the tolerance)."""

    max_abs: dict[str, float]
    worst_ratio: dict[str, float]

    def ok(self) -> bool:
        return all(np.isfinite(v) and v <= 1.0 for v in self.worst_ratio.values())


class _MapModule(nn.Module):
    """The detector's ``anomaly_map`` as ``forward`` (what the ONNX graph computes)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.detector.anomaly_map(images).float()


def freeze_flags(module: nn.Module) -> nn.Module:
    """Turn 0-d boolean buffers (``reference_ready``, ``memory_ready``) into Python bools.

    The networks branch on them with ``bool(buffer)``, which torch.export cannot trace (a data-
    dependent branch); an exported model's flags never change, so they become constants.
    """
    for sub in module.modules():
        for name, buf in list(sub._buffers.items()):
            if buf is not None and buf.dtype == torch.bool and buf.dim() == 0:
                del sub._buffers[name]
                setattr(sub, name, bool(buf))
    return module


def single_pass(module: nn.Module) -> nn.Module:
    """Switch off inference chunking (FMR-Net's ``single_pass``) in every submodule that has it.

    A chunk loop's ``windows > inference_chunk`` test is a guard on the dynamic batch size:
    torch.export would specialise the graph to the traced batch (or fail on the guard).
    """
    for sub in module.modules():
        if hasattr(type(sub), "single_pass"):
            sub.single_pass = True  # type: ignore[assignment]
    return module


def _export(module: nn.Module, example: torch.Tensor, out: Path, outputs: list[str]) -> Path:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # exporter notices (torchvision ops absent, deprecations)
        torch.onnx.export(
            module,
            (example,),
            str(out),
            input_names=["images"],
            output_names=outputs,
            dynamic_shapes=({0: batch},),
            dynamo=True,
            external_data=False,
        )
    return out


def check_parity(module: nn.Module, path: Path, images: torch.Tensor, outputs: list[str]) -> Parity:
    """Run ``path`` with ONNX Runtime (CPU) and ``module`` with PyTorch on ``images``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(outputs, {"images": images.numpy()})
    with torch.inference_mode():
        want = module(images)
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    max_abs, ratio = {}, {}
    for name, a, b in zip(outputs, got, want, strict=True):
        b = b.float().numpy()
        if a.shape != b.shape:
            raise ModelError(f"{path.name}: output {name} has shape {a.shape}, PyTorch gives {b.shape}")
        diff = np.abs(a - b)
        max_abs[name] = float(diff.max())
        ratio[name] = float((diff / (ATOL + RTOL * np.abs(b))).max())
    return Parity(max_abs, ratio)


def export_onnx(model_dir: str | Path, out_dir: str | Path, edge: bool = True, seed: int = 0) -> dict[str, Any]:
    """Write ``model.onnx`` (+ ``edge.onnx`` for FMR-Net) and the metadata; returns the metadata.

    Raises :class:`ModelError` when ONNX Runtime's maps differ from PyTorch's beyond the tolerance.
    """

    detector, card = load_detector(model_dir, "cpu")
    detector = single_pass(freeze_flags(copy.deepcopy(detector).float().eval()))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    example = torch.rand(2, card.channels, card.image_size, card.image_size, generator=gen)
    check = torch.rand(CHECK_BATCH, card.channels, card.image_size, card.image_size, generator=gen)

    parts: list[tuple[str, nn.Module, list[str]]] = [(MODEL_FILE, _MapModule(detector).eval(), ["anomaly_map"])]
    splittable = _is_splittable(detector) and bool(getattr(detector, "memory_ready", False))
    if edge and splittable:
        names = ["patch_scores", *feature_names(detector)]
        parts.append((EDGE_FILE, EdgeEncoder(detector).eval(), names))
    files: dict[str, Any] = {}
    for filename, module, outputs in parts:
        path = _export(module, example, out / filename, outputs)
        parity = check_parity(module, path, check, outputs)
        if not parity.ok():
            raise ModelError(
                f"{path}: ONNX Runtime differs from PyTorch beyond |d| <= {ATOL} + {RTOL} x |torch| "
                f"(max abs {parity.max_abs}, worst |d| / tolerance {parity.worst_ratio}); the export is not usable"
            )
        files[filename] = {"outputs": outputs, "max_abs_diff": parity.max_abs}
    meta: dict[str, Any] = {
        "family": card.family,
        "texinspect_version": __version__,
        "model_created": card.created,
        "image_size": card.image_size,
        "channels": card.channels,
        "input": "images: float32 (B, C, H, W) in [0, 1] (texinspect.data.images.decode_image_bytes)",
        "threshold": card.threshold,
        "pixel_threshold": card.pixel_threshold,
        "score_rule": card.score_rule,
        "score_smoothing": card.score_smoothing,
        "tolerance": {"atol": ATOL, "rtol": RTOL, "checked_batch": CHECK_BATCH},
        "files": files,
    }
    if EDGE_FILE in files:
        meta["edge"] = edge_metadata(detector, card)
    (out / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return meta

"""The model as an MLflow pyfunc: image files in, scores (and optionally maps) out.

Why pyfunc and not ``mlflow.pytorch``: the detector alone is not the model. Preprocessing (decode,
resize, channels), the score rule and the calibrated thresholds live in ``model.yaml`` beside the
weights, and the pytorch flavour in MLflow 3.17 saves a ``torch.export`` program whose batch size
is fixed by the input example. The pyfunc wraps the unchanged texinspect model folder (copied in
as an artifact) and runs the same ``score_images`` as ``texinspect predict``, for any batch size.

It is logged "from code" (:mod:`texinspect.tracking.model_code`), not pickled, and carries the
``texinspect`` package in ``code/``, so the artifact alone, in an environment with the pinned pip
requirements, is enough to load and predict.

Input: a DataFrame with a string column ``image`` holding base64-encoded image files (PNG, JPEG,
BMP, TIFF, any size; resized like training images). Output: a DataFrame with ``score`` (float),
``is_defect`` (score >= the model's threshold) and, when ``params={"return_maps": True}``,
``anomaly_map`` (nested lists, H x W, at the model's image size).
"""

from __future__ import annotations

import base64
import binascii
import importlib.metadata
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

import texinspect
from texinspect.data.images import decode_image_bytes
from texinspect.devices import resolve_device
from texinspect.errors import DataError
from texinspect.models.artifact import load_detector
from texinspect.prediction import score_images

log = logging.getLogger(__name__)

IMAGE_COLUMN = "image"
MODEL_DIR_ARTIFACT = "model_dir"
DEVICE_ENV = "TEXINSPECT_DEVICE"  # device the pyfunc loads onto (default: auto)
# Distributions texinspect's inference path imports, pinned to what is installed here.
RUNTIME_DISTRIBUTIONS = (
    "torch",
    "numpy",
    "pandas",
    "pillow",
    "pyyaml",
    "scipy",
    "scikit-learn",
    "tqdm",
    "matplotlib",
)
MAX_PIXELS = 64_000_000  # refuse decompression bombs before decoding


def encode_images(files: Iterable[str | Path | bytes]) -> pd.DataFrame:
    """Image files (paths or raw bytes) -> the pyfunc's input DataFrame."""
    rows = []
    for item in files:
        data = item if isinstance(item, (bytes, bytearray)) else Path(item).read_bytes()
        rows.append(base64.b64encode(bytes(data)).decode("ascii"))
    return pd.DataFrame({IMAGE_COLUMN: rows})


def signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", IMAGE_COLUMN)]),
        outputs=Schema([ColSpec("double", "score"), ColSpec("boolean", "is_defect")]),
        params=ParamSchema([ParamSpec("return_maps", "boolean", False), ParamSpec("batch_size", "long", 8)]),
    )


def pip_requirements() -> list[str]:
    """Pinned requirements of the inference path (passed explicitly: inference takes seconds)."""
    reqs = []
    for name in ("mlflow", *RUNTIME_DISTRIBUTIONS):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        reqs.append(f"{name}=={version.split('+')[0]}")
    return reqs


def _decode_cell(value: Any, row: int) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str):
        raise DataError(
            f"input row {row}: column '{IMAGE_COLUMN}' must hold base64 text, got {type(value).__name__}"
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataError(f"input row {row}: column '{IMAGE_COLUMN}' is not valid base64 ({exc})") from None


class TexinspectModel(mlflow.pyfunc.PythonModel):
    """Loads the texinspect model folder and scores batches of encoded images."""

    def load_context(self, context: Any) -> None:
        self.device = resolve_device(os.environ.get(DEVICE_ENV, "auto"))
        self.detector, self.card = load_detector(context.artifacts[MODEL_DIR_ARTIFACT], self.device)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        params = params or {}
        if not isinstance(model_input, pd.DataFrame) or IMAGE_COLUMN not in model_input.columns:
            raise DataError(
                f"input must be a table with a '{IMAGE_COLUMN}' column of base64-encoded image files"
            )

        arrays = [
            decode_image_bytes(
                _decode_cell(value, i),
                self.card.image_size,
                self.card.channels,
                MAX_PIXELS,
                name=f"input row {i}",
            )
            for i, value in enumerate(model_input[IMAGE_COLUMN].tolist())
        ]
        maps, scores = self.predict_array(np.stack(arrays), int(params.get("batch_size") or 8))
        threshold = self.card.threshold
        out = pd.DataFrame(
            {
                "score": scores.astype(np.float64),
                "is_defect": scores >= threshold if threshold is not None else np.zeros(len(scores), bool),
            }
        )
        if params.get("return_maps"):
            out["anomaly_map"] = [m.tolist() for m in maps]
        return out

    def predict_array(self, images: np.ndarray, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Maps (B,H,W) and scores (B,) for preprocessed images (B,C,H,W) in [0, 1]."""
        import torch

        if images.ndim != 4 or images.shape[1] != self.card.channels:
            raise DataError(
                f"expected images shaped (B, {self.card.channels}, H, W), got {tuple(images.shape)}"
            )
        maps, scores = [], []
        for start in range(0, len(images), max(1, batch_size)):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size], np.float32))
            m, s = score_images(self.detector, self.card, batch.to(self.device))
            maps.append(m)
            scores.append(s)
        return np.concatenate(maps), np.concatenate(scores)


def log_model(model_dir: str | Path, name: str = "model") -> Any:
    """Log ``model_dir`` as a pyfunc model into the active MLflow run; returns the ModelInfo."""

    # model_code.py by path: importing it would run its set_model() here, in the logging process
    model_code = Path(__file__).with_name("model_code.py")
    with tempfile.TemporaryDirectory(prefix="texinspect-code-") as staging, warnings.catch_warnings():
        # The package without bytecode caches: source only, smaller and interpreter-independent.
        package = Path(staging) / "texinspect"
        shutil.copytree(
            Path(texinspect.__file__).resolve().parent,
            package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        # No input example on purpose: MLflow would load and run the model once more to check it.
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(model_code.resolve()),
            artifacts={MODEL_DIR_ARTIFACT: str(Path(model_dir).resolve())},
            code_paths=[str(package)],
            signature=signature(),
            pip_requirements=pip_requirements(),
        )

"""Model artifact on disk: everything needed to predict, with nothing but the folder.

Layout of ``MODEL_DIR``::

    model.yaml     family, resolved config, preprocessing, threshold, normal-score statistics
    weights.pt     state dict of the family's Detector (buffers hold memory bank / reference)

Threshold and preprocessing travel with the weights so that ``texinspect predict``, the KServe
predictor and an MLflow pyfunc give the same scores for the same files.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from texinspect import __version__
from texinspect.config import Config, config_from_dict
from texinspect.errors import ConfigError, ModelError
from texinspect.models.base import Detector
from texinspect.models.registry import family_module
from texinspect.outputs import ensure_output_dir, write_text_atomic
from texinspect.torch_files import load_torch_file, save_torch_file

CARD_FILE = "model.yaml"
WEIGHTS_FILE = "weights.pt"


@dataclass
class ModelCard:
    """What travels beside the weights."""

    family: str
    config: dict[str, Any]
    image_size: int
    channels: int
    threshold: float | None = None  # image-score threshold (k-sigma over held-out normal scores)
    pixel_threshold: float | None = None  # map threshold for defect masks
    normal_score_mean: float | None = None
    normal_score_std: float | None = None
    score_rule: str = "max_of_gaussian_smoothed_map"
    score_smoothing: float = 4.0
    texinspect_version: str = __version__
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_config(self) -> Config:
        try:
            return config_from_dict(self.config)
        except ConfigError as exc:
            raise ModelError(f"{CARD_FILE}: stored config does not match this texinspect: {exc}") from exc


def save_detector(detector: Detector, card: ModelCard, out_dir: str | Path) -> Path:
    """Weights, then the card, each written whole (a failed write names the file; see ``outputs``)."""
    out = ensure_output_dir(out_dir)
    state = {k: v.detach().cpu() for k, v in detector.state_dict().items()}
    save_torch_file(state, out / WEIGHTS_FILE)
    write_text_atomic(out / CARD_FILE, yaml.safe_dump(dataclasses.asdict(card), sort_keys=False))
    return out


def load_card(model_dir: str | Path) -> ModelCard:
    path = Path(model_dir) / CARD_FILE
    if not path.exists():
        raise ModelError(f"{model_dir}: not a model folder (no {CARD_FILE}); pass the folder `train` wrote")
    try:
        raw = yaml.safe_load(path.read_text())
        return ModelCard(**raw)
    except (yaml.YAMLError, TypeError) as exc:
        raise ModelError(f"{path}: unreadable model card: {exc}") from exc


def load_detector(model_dir: str | Path, device: torch.device | str = "cpu") -> tuple[Detector, ModelCard]:
    """Rebuild the family's Detector from its card and load the weights (weights_only=True)."""
    card = load_card(model_dir)
    config = card.resolved_config()
    detector: Detector = family_module(card.family).build(config)
    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.exists():
        raise ModelError(f"{model_dir}: {WEIGHTS_FILE} is missing")
    state = load_torch_file(weights, f"{weights}: not a texinspect weights file, or corrupted; refusing to load it")
    try:
        detector.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{weights}: weights do not fit the {card.family} network: {exc}") from exc
    if detector.image_score_rule != card.score_rule:
        raise ModelError(
            f"{model_dir}: thresholds in {CARD_FILE} were calibrated for the image score rule "
            f"'{card.score_rule}', but this network scores images by '{detector.image_score_rule}' "
            "(an artifact from an older version?). Re-derive or retrain the model, or set the family's "
            "image-score option (e.g. fmrnet.image_score=map) to match"
        )
    detector.to(device).eval()
    if config.train.channels_last:
        # NHWC weights make every convolution run channels-last (inputs follow the weights):
        # FMR-Net's transposed convolutions are ~4x faster so (benchmarks/README.md, before/after)
        detector.to(memory_format=torch.channels_last)
    return detector, card

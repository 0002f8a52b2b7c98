"""Compile-time settings of the pipeline, importable without the KFP SDK.

Kept apart from ``training.py`` because the main CLI builds its parser inside every pipeline
task, where KFP's runtime ships a reduced ``kfp.dsl`` that ``kfp.kubernetes`` cannot import.
"""

from __future__ import annotations

from dataclasses import dataclass

from texinspect import __version__

PIPELINE_NAME = "texinspect-training"
DEFAULT_IMAGE = f"ghcr.io/texinspect/texinspect:{__version__}"
MODEL_STORE_MOUNT = "/mnt/model-store"


@dataclass(frozen=True)
class ClusterSettings:
    """What the compiled YAML fixes: image, GPU request, and the cluster objects it uses."""

    image: str = DEFAULT_IMAGE
    gpus: int = 1  # per training task; 0 compiles a CPU-only pipeline
    gpu_resource: str = "nvidia.com/gpu"
    config_map: str = "texinspect-config"  # MLFLOW_TRACKING_URI, MLFLOW_S3_ENDPOINT_URL (k8s/base)
    s3_secret: str = "texinspect-s3"  # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (created by hand)
    model_pvc: str = "texinspect-models"  # the model store the deploy task writes (k8s/base)
    run_as_user: int = 1000  # the image's non-root user

"""Compile-time settings of the pipeline, importable without the KFP SDK.

Kept apart from ``training.py`` because the main CLI builds its parser inside every pipeline
task, where KFP's runtime ships a reduced ``kfp.dsl`` that ``kfp.kubernetes`` cannot import.
"""

from __future__ import annotations

from dataclasses import dataclass

from texinspect import __version__

PIPELINE_NAME = "texinspect-training"
IMAGE_REPOSITORY = "ghcr.io/texinspect/texinspect"
# One image per accelerator, built from the same Dockerfile (build arg TORCH_FLAVOR): the CPU
# build of torch is a fraction of the CUDA one, and the CUDA build is what a GPU task needs.
FLAVOR_TAG_SUFFIX: dict[str, str] = {"cpu": "", "cuda": "-cuda"}
DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"  # the CPU image
CUDA_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}{FLAVOR_TAG_SUFFIX['cuda']}"


def flavor_for(gpus: int) -> str:
    """``cuda`` when the training tasks request GPUs, else ``cpu``: the image and YAML flavor."""
    return "cuda" if gpus > 0 else "cpu"


def image_for(gpus: int) -> str:
    """The project image a pipeline compiled for ``gpus`` GPUs per training task must run."""
    return f"{IMAGE_REPOSITORY}:{__version__}{FLAVOR_TAG_SUFFIX[flavor_for(gpus)]}"


MODEL_STORE_MOUNT = "/mnt/model-store"


@dataclass(frozen=True)
class ClusterSettings:
    """What the compiled YAML fixes: image, GPU request, and the cluster objects it uses.

    ``image`` left empty follows the accelerator (:func:`image_for`): a GPU compile names the
    CUDA image, a CPU compile the CPU one, so a GPU task never runs the CPU build of torch.
    """

    image: str = ""  # "": image_for(gpus)
    gpus: int = 1  # per training task = DDP ranks per pod; 0 compiles a CPU-only pipeline
    gpu_resource: str = "nvidia.com/gpu"
    config_map: str = "texinspect-config"  # MLFLOW_TRACKING_URI (k8s/base)
    sweep_db_secret: str = "texinspect-sweep-db"  # key TEXINSPECT_SWEEP_STORAGE (created by hand)
    model_pvc: str = "texinspect-models"  # the model store the deploy task writes (k8s/base)
    run_as_user: int = 1000  # the image's non-root user

    def __post_init__(self) -> None:
        if self.gpus < 0:
            raise ValueError(f"ClusterSettings.gpus: expected >= 0 GPUs per training task, got {self.gpus}")
        if not self.image:
            object.__setattr__(self, "image", image_for(self.gpus))

    @property
    def flavor(self) -> str:
        return flavor_for(self.gpus)


# The YAML each image carries: the CPU image ships pipelines/cpu/, the CUDA image pipelines/cuda/
# (the Dockerfile copies pipelines/${TORCH_FLAVOR}/ to /app/pipelines/).
FLAVOR_SETTINGS: dict[str, ClusterSettings] = {"cpu": ClusterSettings(gpus=0), "cuda": ClusterSettings(gpus=1)}

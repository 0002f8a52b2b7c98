"""The memory-bank stage between the two training phases, for a run folder of any family.

``texinspect memory-bank`` and the pipeline's between-phases step call it: for FMR-Net it builds
the k-means memory bank (:func:`texinspect.models.fmrnet.memory_bank.build_memory_bank`); other
families have no bank, so it writes a stage record that says so (DVC/KFP stages get their
declared output) without ever replacing a real bank.
"""

from __future__ import annotations

from pathlib import Path

from texinspect.config import Config
from texinspect.errors import ModelError, TexinspectError
from texinspect.models.fmrnet.memory_bank import MEMORY_FILE, build_memory_bank, phase1_checkpoint
from texinspect.outputs import ensure_output_dir
from texinspect.torch_files import load_torch_file, save_torch_file
from texinspect.training.checkpoint import load_checkpoint


def default_bank_path(checkpoint: Path) -> Path:
    """``<run folder>/memory_bank.pt`` for a checkpoint file, a checkpoints/ folder or a run folder."""

    if checkpoint.is_file():
        run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    elif checkpoint.name == "checkpoints":
        run = checkpoint.parent
    else:
        run = checkpoint
    return run / MEMORY_FILE


def is_fmrnet_source(source: Path) -> bool:
    """Whether ``source`` (run folder, checkpoint, model folder) holds an FMR-Net."""
    import yaml

    if source.is_dir() and (source / "model.yaml").exists():
        return (yaml.safe_load((source / "model.yaml").read_text()) or {}).get("family") == "fmrnet"
    ckpt = phase1_checkpoint(source)
    if ckpt is None:
        return False
    try:
        state = load_checkpoint(ckpt)["modules"]["generator"]
    except (KeyError, TypeError, OSError, TexinspectError):
        return False
    return "memory" in state and "memory_ready" in state


def stage_family(config: Config, checkpoint: Path) -> str:
    """The family whose stage runs: FMR-Net when ``checkpoint`` holds one, even if the params
    file's ``model`` is another family (the repo default is rbae), else ``config.model``."""
    if config.model != "fmrnet" and is_fmrnet_source(checkpoint):
        return "fmrnet"
    return config.model


def memory_bank_stage(config: Config, checkpoint: Path, out: Path) -> Path:
    """Build the bank of ``checkpoint`` into ``out`` (FMR-Net), or write the stage record of a
    family without one; returns ``out``."""

    if config.model == "fmrnet":
        return build_memory_bank(config, checkpoint, out)

    if out.exists() and "memory" in load_torch_file(
        out, f"{out}: not a texinspect memory bank or stage record, or corrupted; refusing to load it"
    ):
        raise ModelError(f"{out} is an FMR-Net memory bank; refusing to replace it with a {config.model} record")
    ensure_output_dir(out.parent)
    save_torch_file({"family": config.model, "memory_bank": None}, out)
    return out

"""Torch files (weights, checkpoints, memory banks): loads that never run code, writes never half done.

Loading is always ``torch.load(..., weights_only=True)``: a file may hold tensors and plain data,
nothing that executes. When torch refuses or cannot read a file (a pickle that would run code, a
truncated zip, any other bytes), its message advises re-running with ``weights_only=False``, which
would run whatever the file holds. That advice must never reach a user, so torch's error is
dropped (``from None``) and the caller's own one-line message is raised instead: which file, and
what to do about it.

Writing serializes into memory first and hands the bytes to :func:`texinspect.outputs.write_atomic`:
a full disk then shows up as ``OSError(ENOSPC)`` from our own write (torch's file writer reports
``enforce fail at inline_container.cc`` with no word about space), the temporary file is removed
and the previous file stays as it was.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch

from texinspect.errors import ModelError, TexinspectError
from texinspect.outputs import write_atomic

log = logging.getLogger(__name__)


def load_torch_file(path: str | Path, refusal: str, error: type[TexinspectError] = ModelError) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; anything torch cannot or will not load
    raises ``error(refusal)``. A missing file raises FileNotFoundError (callers say what is missing)."""
    p = Path(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except OSError as exc:  # unreadable, not unloadable: say so, without torch's text
        raise error(f"{p}: cannot read the file ({exc.strerror or type(exc).__name__})") from None
    except Exception as exc:  # torch raises many types here; none of their text is shown
        log.debug("torch refused %s: %s", p, type(exc).__name__)
        raise error(refusal) from None


def save_torch_file(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically (see the module docstring); OutputError on a failed write."""
    return write_atomic(path, torch_bytes(obj))


def torch_bytes(obj: Any) -> memoryview:
    """``obj`` serialized by ``torch.save`` (to write it to several files with one serialization)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer()

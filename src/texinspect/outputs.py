"""Output folders and files: created, written whole, or refused in one line that says what to do.

A training run writes for minutes to hours; when the disk fills up or ``--out`` is read-only (or a
file), the person at the terminal needs the path and the cause, not a traceback from deep inside
torch. Every write here goes to ``<name>.tmp`` beside the target, is flushed to disk and renamed
over it, so a failure leaves the previous file as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from texinspect.errors import OutputError

# errno -> (what happened, what to do): the operating system's conditions a user can fix.
_CAUSES: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free some space and rerun the same command"),
    errno.EDQUOT: ("disk quota exceeded", "free some space and rerun the same command"),
    errno.EFBIG: ("file too large for this file system or limit", "write to another file system"),
    errno.EROFS: ("read-only file system", "choose a writable output folder"),
    errno.EACCES: ("permission denied", "make it writable or choose another output folder"),
    errno.EPERM: ("operation not permitted", "make it writable or choose another output folder"),
    errno.ENOTDIR: (
        "a file is in the way where a folder is needed",
        "remove that file or choose another output folder",
    ),
    errno.EISDIR: (
        "a folder is in the way where a file is needed",
        "remove that folder or choose another output folder",
    ),
    errno.EEXIST: (
        "a file is in the way where a folder is needed",
        "remove that file or choose another output folder",
    ),
}


def is_environment_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a condition of the machine a user can fix (space, permissions, a file in the way)."""
    return isinstance(exc, OSError) and exc.errno in _CAUSES


def describe_os_error(exc: OSError, path: str | Path | None = None) -> str:
    """One line: the path, what happened and what to do (the errno's text for conditions not listed)."""
    where = path if path is not None else (exc.filename if exc.filename is not None else "output")
    what, todo = _CAUSES.get(exc.errno or 0, (exc.strerror or str(exc), "check the path and rerun"))
    return f"cannot write {where}: {what}; {todo}"


def ensure_output_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) and check that files can be created in it; OutputError if not.

    A probe file is created and removed, so a read-only folder is found before any work is done,
    not after the first checkpoint (``os.access`` alone would trust root on a read-only mount).
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(
            f"{out} is a file, not a folder: pass a folder as the output (--out), or remove the file"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, exc.filename or out)) from None
    return out


def write_atomic(path: str | Path, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` through ``path.tmp`` + fsync + rename; on failure the temporary file
    is removed, the previous ``path`` is untouched, and OutputError names the file and the cause."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OutputError(describe_os_error(exc, target)) from None
    return target


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_atomic` for text (UTF-8)."""
    return write_atomic(path, text.encode("utf-8"))

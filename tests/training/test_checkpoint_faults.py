"""Training faults end in one line that names the file and says what to do (issue 20): a truncated
``last.pt`` or ``phase1_end.pt``, a file or a read-only folder as ``--out``, a full disk. The previous
good checkpoint stays untouched and no ``last.pt.tmp`` is left behind; the rerun then resumes.
"""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import pytest
import torch

from texinspect.cli import main
from texinspect.data.sample import make_sample_dataset
from texinspect.errors import CheckpointError, ModelError
from texinspect.training.checkpoint import Checkpointer, load_checkpoint
from texinspect.training.loop import training_hooks

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
ADVICE = "delete it to restart the phase, or pass --no-resume"


class Killed(Exception):
    """Stands for SIGKILL between two checkpoints."""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ckpt_faults") / "data"
    make_sample_dataset(root, n_train=20, n_test_good=1, n_test_defect_per_type=1, size=64, seed=4)
    return root


def _train(data: Path, out: Path, *extra: str, kill_at: tuple[str, int] | None = None) -> int:
    args = [
        "train", "--model", "rbae", "--profile", "smoke", "--config", str(PARAMS), "--data", str(data),
        "--out", str(out), "--device", "cpu", "--no-track",
        "--set", "train.max_steps_phase1=6", "--set", "train.max_steps_phase2=4",
        "--set", "train.checkpoint_every=2", "--set", "train.log_every=1", "--set", "train.progress=false",
        "--set", "synthesis.texture_pool=", *extra,
    ]  # fmt: skip

    def listener(phase: str, step: int, row: dict[str, float]) -> None:
        if kill_at == (phase, step):
            raise Killed(f"{phase} step {step}")

    with training_hooks(on_log=listener):
        return main(args)


def _error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_last_checkpoint_is_one_line_then_no_resume_trains(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with pytest.raises(Killed):
        _train(data_root, out, kill_at=("phase1", 5))
    last = out / "checkpoints" / "last.pt"
    _truncate(last)
    capsys.readouterr()
    assert _train(data_root, out) == 2
    assert _error_lines(capsys) == [
        f"error: checkpoint {last} is corrupt or not a texinspect checkpoint: {ADVICE}"
    ]
    assert _train(data_root, out, "--no-resume") == 0  # the advice works
    assert (out / "model" / "weights.pt").exists()


def test_truncated_phase1_end_is_one_line(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with pytest.raises(Killed):
        _train(data_root, out, kill_at=("phase2", 3))
    end = out / "checkpoints" / "phase1_end.pt"
    _truncate(end)
    capsys.readouterr()
    assert _train(data_root, out) == 2
    assert _error_lines(capsys) == [
        f"error: checkpoint {end} is corrupt or not a texinspect checkpoint: {ADVICE}"
    ]
    end.unlink()  # the advice: delete it, phase 1 is retrained
    (out / "checkpoints" / "last.pt").unlink()
    assert _train(data_root, out) == 0


def test_checkpoint_of_another_network_is_one_line(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with pytest.raises(Killed):
        _train(data_root, out, kill_at=("phase1", 3))
    capsys.readouterr()
    assert _train(data_root, out, "--set", "rbae.widths=[8, 16, 32, 32, 64]") == 2
    (line,) = _error_lines(capsys)
    assert line.startswith(
        f"error: checkpoint {out / 'checkpoints' / 'last.pt'} does not fit the configured network ("
    )
    assert line.endswith("): pass --no-resume or choose another --out")


def test_file_valued_out_is_one_line(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "notes.txt"
    out.write_text("not a folder")
    assert _train(data_root, out) == 2
    assert _error_lines(capsys) == [
        f"error: {out} is a file, not a folder: pass a folder as the output (--out), or remove the file"
    ]
    assert out.read_text() == "not a folder"


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes into read-only folders; see the simulated test below"
)
def test_read_only_out_is_one_line(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert _train(data_root, out) == 2
    finally:
        out.chmod(0o755)
    (line,) = _error_lines(capsys)
    assert line.startswith(f"error: cannot write {out}") and "permission denied" in line


def test_read_only_file_system_is_one_line(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only mount, simulated (creating any file there fails with EROFS)."""
    import tempfile

    out = tmp_path / "ro"

    def read_only(*args: object, **kwargs: object) -> object:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(kwargs.get("dir", out)))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert _train(data_root, out) == 2
    assert _error_lines(capsys) == [
        f"error: cannot write {out}: read-only file system; choose a writable output folder"
    ]


def test_full_disk_is_one_line_keeps_the_last_good_checkpoint_and_no_tmp(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """From phase 1 step 3 on, every write of last.pt.tmp fails half-way with ENOSPC, as a disk that
    fills up does; torch's own writer used to say `enforce fail at inline_container.cc` instead."""
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.pt"
    tmp_fds: set[int] = set()
    full = {"on": False}
    real_open, real_write = os.open, os.write

    def tracking_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        if str(path).endswith("last.pt.tmp"):
            tmp_fds.add(fd)
        return fd

    def filling_write(fd: int, data: object) -> int:
        if full["on"] and fd in tmp_fds:
            real_write(fd, memoryview(data)[: len(memoryview(data)) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "open", tracking_open)
    monkeypatch.setattr(os, "write", filling_write)

    def fill_disk(phase: str, step: int, row: dict[str, float]) -> None:
        if (phase, step) == ("phase1", 3):
            full["on"] = True

    capsys.readouterr()
    with training_hooks(on_log=fill_disk):
        assert _train(data_root, out) == 2
    assert _error_lines(capsys) == [
        f"error: cannot write {last}: no space left on the device; free some space and rerun the same command"
    ]
    saved = load_checkpoint(last)  # the previous good checkpoint, whole
    assert saved["phase"] == "phase1" and saved["step"] == 2
    assert not (out / "checkpoints" / "last.pt.tmp").exists()

    full["on"] = False  # space freed: the same command resumes from step 2
    assert _train(data_root, out) == 0
    assert (out / "model" / "weights.pt").exists()


def test_a_tmp_file_left_by_a_kill_mid_write_is_removed(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "last.pt.tmp").write_bytes(b"half a checkpoint")
    Checkpointer(folder)
    assert not (folder / "last.pt.tmp").exists()


# --------------------------------------------------------------------------- refused files


class _RunsCode:
    """Unpickling this would run ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_refused_weight_files_never_suggest_unsafe_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch's refusal says to re-run with weights_only=False, which would run the file's code."""
    from texinspect.config import Config
    from texinspect.models import family_module
    from texinspect.models.artifact import ModelCard, load_detector, save_detector

    config = Config().with_overrides(
        {"rbae.widths": [8, 16, 32, 32, 32], "rbae.perceptual": "none", "data.image_size": 64}
    )
    detector = family_module("rbae").build(config)
    card = ModelCard("rbae", config.to_dict(), 64, 3, score_rule=detector.image_score_rule)
    model = save_detector(detector, card, tmp_path / "model")
    marker = tmp_path / "code-ran"
    weights = model / "weights.pt"
    for content in (
        lambda: torch.save({"x": _RunsCode(marker)}, weights),  # a pickle that runs code
        lambda: weights.write_bytes(pickle.dumps({"x": 1}, protocol=2)),  # not a torch file
        lambda: weights.write_bytes(weights.read_bytes()[:100]),  # truncated
    ):
        content()
        with pytest.raises(ModelError) as err:
            load_detector(model)
        assert (
            str(err.value) == f"{weights}: not a texinspect weights file, or corrupted; refusing to load it"
        )
        assert err.value.__cause__ is None and err.value.__suppress_context__
        capsys.readouterr()
        assert (
            main(["predict", "--model", str(model), "--data", str(tmp_path), "--out", str(tmp_path / "p")])
            == 2
        )
        err_text = capsys.readouterr().err
        assert (
            err_text.strip()
            == f"error: {weights}: not a texinspect weights file, or corrupted; refusing to load it"
        )
        assert "weights_only" not in err_text
    assert not marker.exists()

    checkpoint = tmp_path / "checkpoints" / "last.pt"
    checkpoint.parent.mkdir()
    torch.save({"phase": "phase1", "step": 1, "modules": _RunsCode(marker)}, checkpoint)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(checkpoint)
    assert "weights_only" not in str(err.value) and str(err.value).endswith(ADVICE)
    assert not marker.exists()

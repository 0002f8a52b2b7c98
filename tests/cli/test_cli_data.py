"""``texinspect data check|sample``: exit codes and printed summaries."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from texinspect.cli import main
from texinspect.cli.data import add_parser


def test_add_parser_mounts_data_commands() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "check", "some/dir", "--size", "64", "--strict"])
    assert (args.dir, args.size, args.strict) == ("some/dir", 64, True) and callable(args.func)
    args = parser.parse_args(["data", "sample", "out", "--seed", "3", "--texture", "woven", "--n-train", "5"])
    assert (args.seed, args.texture, args.n_train) == (3, "woven", 5)
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "sample", "out", "--texture", "marble"])


def test_sample_then_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ds"
    argv = [
        "data",
        "sample",
        str(root),
        "--size",
        "32",
        "--n-train",
        "3",
        "--n-test-good",
        "1",
        "--n-test-defect",
        "1",
    ]
    assert main(argv) == 0
    assert "train/good 3" in capsys.readouterr().out
    assert main(argv) == 2  # not empty: one error line, no traceback
    assert "folder is not empty" in capsys.readouterr().err

    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "problems: 0" in out and "scratch" in out and "32x32" in out

    (root / "ground_truth" / "spot" / "000_mask.png").unlink()
    assert main(["data", "check", str(root)]) == 1
    assert "test/spot/000.png: defect image has no mask" in capsys.readouterr().out
    assert main(["data", "check", str(root), "--strict"]) == 1
    assert f"{root / 'test' / 'spot' / '000.png'}: defect image has no mask" in capsys.readouterr().err

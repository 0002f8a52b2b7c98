"""The synthesize stage and its CLI: files, manifest, preview, byte-for-byte reproducibility."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from texinspect.cli import synthesis as cli
from texinspect.config import Config, load_config
from texinspect.errors import DataError
from texinspect.synthesis.stage import synthesize

from .conftest import MAGNETIC_TILE, TEXTURE_POOL, write_mvtec


def small_config(root: Path, count: int = 5, pool: str = "") -> Config:
    return load_config(
        None,
        {
            "data.root": str(root),
            "data.image_size": 32,
            "data.channels": 1,
            "synthesis.count": count,
            "synthesis.texture_pool": pool,
            "train.progress": False,
        },
    )


def digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_stage_writes_pairs_manifest_and_preview(tmp_path: Path) -> None:
    root = write_mvtec(tmp_path / "data", n_train=4, size=40)
    out = synthesize(small_config(root), tmp_path / "out")
    for i in range(5):
        image = np.asarray(Image.open(out / "images" / f"{i:04d}.png"))
        mask = np.asarray(Image.open(out / "masks" / f"{i:04d}_mask.png"))
        source = np.asarray(Image.open(out / "sources" / f"{i:04d}.png"))
        assert image.shape == mask.shape == source.shape == (32, 32)
        assert set(np.unique(mask)) <= {0, 255} and mask.any()
        changed = np.abs(image.astype(int) - source.astype(int)) > 0
        assert changed[mask > 0].mean() > 0.5  # the mask sits where the image changed
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest["index"]) == list(range(5))
    assert set(manifest["kind"]) <= {"destructive", "translucent", "self_texture", "shift"}
    assert manifest["source_rel"].str.startswith("train/good/").all()
    assert (manifest["mask_area"] > 0).all()
    preview = Image.open(out / "preview.png")
    assert preview.width > 5 * 32 and preview.height >= 4 * 32  # rows source|defect|mask|overlay


def test_stage_is_byte_for_byte_reproducible_and_removes_stale_files(tmp_path: Path) -> None:
    root = write_mvtec(tmp_path / "data", n_train=3, size=32)
    first = digest(synthesize(small_config(root, count=4), tmp_path / "a"))
    synthesize(small_config(root, count=6), tmp_path / "b")
    second = digest(synthesize(small_config(root, count=4), tmp_path / "b"))
    assert first == second
    assert "images/0005.png" not in second


def test_stage_without_training_images_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="train/good"):
        synthesize(small_config(tmp_path / "nothing"), tmp_path / "out")


def test_cli_runs_the_stage(tmp_path: Path, capsys) -> None:
    root = write_mvtec(tmp_path / "data", n_train=2, size=32)
    parser = argparse.ArgumentParser(prog="texinspect")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "synthesize",
            "--config",
            str(tmp_path / "absent-is-an-error.yaml"),
        ]
    )
    from texinspect.errors import ConfigError

    with pytest.raises(ConfigError, match="not found"):
        args.func(args)
    params = tmp_path / "params.yaml"
    params.write_text("data: {image_size: 32, channels: 1}\nprofiles: {tiny: {synthesis: {count: 2}}}\n")
    args = parser.parse_args(
        [
            "synthesize",
            "--config",
            str(params),
            "--profile",
            "tiny",
            "--set",
            "synthesis.texture_pool=",
            "--set",
            "train.progress=false",
            "--data",
            str(root),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert args.func(args) == 0
    assert (tmp_path / "out" / "images" / "0001.png").is_file()
    assert not (tmp_path / "out" / "images" / "0002.png").exists()
    assert "preview.png" in capsys.readouterr().out


@pytest.mark.realdata
def test_stage_on_magnetic_tile_with_real_pool(tmp_path: Path) -> None:
    if not (MAGNETIC_TILE.is_dir() and TEXTURE_POOL.is_dir()):
        pytest.skip(
            f"real data not found ({MAGNETIC_TILE}, {TEXTURE_POOL}); see ../shared/datasets/README.md"
        )
    config = load_config(
        None,
        {
            "data.root": str(MAGNETIC_TILE),
            "data.image_size": 64,
            "synthesis.count": 8,
            "synthesis.texture_pool": str(TEXTURE_POOL),
            "train.progress": False,
        },
    )
    out = synthesize(config, tmp_path / "out")
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 8 and (manifest["mask_area"] >= config.synthesis.mask.min_area).all()
    # magnetic tile is grayscale: defects stay grayscale although the pool is in colour
    image = np.asarray(Image.open(out / "images" / "0000.png").convert("RGB")).astype(int)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()

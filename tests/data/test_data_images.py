"""load_image / load_mask / decode_image_bytes: conversions, resizing, bad files, bombs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from texinspect.data.images import decode_image_bytes, image_info, load_image, load_mask, mask_array
from texinspect.errors import ConfigError, DataError


def one_line(exc: pytest.ExceptionInfo[DataError]) -> str:
    text = str(exc.value)
    assert "\n" not in text, f"error message spans several lines: {text!r}"
    return text


def test_grayscale_to_three_channels(tmp_path: Path, tools) -> None:
    gray = tools.pixels(np.random.default_rng(0), 16)
    path = tools.write(tmp_path / "g.png", gray)
    out = load_image(path, 16, 3)
    assert out.shape == (3, 16, 16) and out.dtype == np.float32
    expected = gray.astype(np.float32) / 255
    for channel in out:
        np.testing.assert_array_equal(channel, expected)


def test_rgb_to_one_channel_uses_luma(tmp_path: Path, tools) -> None:
    rgb = tools.pixels(np.random.default_rng(0), 16, 3)
    path = tools.write(tmp_path / "c.png", rgb)
    out = load_image(path, 16, 1)
    assert out.shape == (1, 16, 16)
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(out[0] * 255 - luma).max() <= 1.0  # ITU-R 601, rounded to 8 bits
    np.testing.assert_array_equal(load_image(path, 16, 3), rgb.transpose(2, 0, 1).astype(np.float32) / 255)


def test_rgba_palette_and_16bit_files(tmp_path: Path, tools) -> None:
    rng = np.random.default_rng(0)
    rgb = tools.pixels(rng, 8, 3)
    rgba = np.concatenate([rgb, np.full((8, 8, 1), 7, np.uint8)], axis=2)
    path = tools.write(tmp_path / "a.png", rgba)
    # Alpha is dropped, not composited: the colour values are kept.
    np.testing.assert_array_equal(load_image(path, 8, 3), rgb.transpose(2, 0, 1) / np.float32(255))

    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "p.png")
    expected = np.asarray(palette.convert("RGB")).transpose(2, 0, 1) / np.float32(255)
    np.testing.assert_array_equal(load_image(tmp_path / "p.png", 8, 3), expected)

    deep = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert image_info(tmp_path / "d.png").mode.startswith("I")
    out = load_image(tmp_path / "d.png", None, 1)
    # Scaled by 65535, not clipped at 255 as Pillow's convert("L") would do.
    np.testing.assert_allclose(out[0], deep / 65535.0, atol=1e-6)
    assert load_image(tmp_path / "d.png", 4, 3).shape == (3, 4, 4)


def test_resize_is_bilinear_antialiased(tmp_path: Path, tools) -> None:
    # A one-pixel checkerboard averages to grey when shrunk with antialiasing (sampling would alias).
    board = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    path = tools.write(tmp_path / "board.png", board)
    small = load_image(path, 16, 1)
    assert small.shape == (1, 16, 16)
    assert np.abs(small - 0.5).max() < 0.02
    big = load_image(
        tools.write(tmp_path / "ramp.png", np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))), 32, 1
    )
    assert big.shape == (1, 32, 32)
    assert np.all(np.diff(big[0, 0]) >= 0)  # interpolation keeps the ramp monotonic
    assert 0.0 <= big.min() and big.max() <= 1.0
    nonsquare = load_image(
        tools.write(tmp_path / "wide.png", tools.pixels(np.random.default_rng(0), 8)[:4]), 8, 1
    )
    assert nonsquare.shape == (1, 8, 8)


def test_invalid_arguments_are_config_errors(tmp_path: Path, tools) -> None:
    path = tools.write(tmp_path / "g.png", tools.pixels(np.random.default_rng(0), 8))
    with pytest.raises(ConfigError, match="channels must be 1 or 3, got 2"):
        load_image(path, 8, 2)
    with pytest.raises(ConfigError, match="positive integer, got 0"):
        load_image(path, 0, 1)


def test_missing_unreadable_and_truncated_files(tmp_path: Path, tools) -> None:
    with pytest.raises(DataError) as exc:
        load_image(tmp_path / "none.png", 8, 1)
    assert one_line(exc) == f"{tmp_path / 'none.png'}: file not found"

    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(DataError) as exc:
        load_image(junk, 8, 1)
    assert one_line(exc).startswith(f"{junk}: not a readable image")

    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        load_image(empty, 8, 1)

    rng = np.random.default_rng(0)
    for name in ("t.png", "t.jpg"):
        full = tools.write(tmp_path / f"full_{name}", tools.pixels(rng, 64, 3))
        data = full.read_bytes()
        cut = tmp_path / name
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(DataError) as exc:
            load_image(cut, 8, 3)
        assert one_line(exc).startswith(f"{cut}: truncated or corrupt image data")
        with pytest.raises(DataError, match="truncated or corrupt"):
            decode_image_bytes(data[: len(data) // 2], 8, 3)


def test_decode_bytes_equals_load_image(tmp_path: Path, tools) -> None:
    rng = np.random.default_rng(0)
    files = [
        tools.write(tmp_path / "g.png", tools.pixels(rng, 40)),
        tools.write(tmp_path / "c.jpg", tools.pixels(rng, 40, 3)),
        tools.write(tmp_path / "c.bmp", tools.pixels(rng, 30, 3)[:20]),
    ]
    for path in files:
        for size, channels in ((32, 3), (32, 1), (64, 3), (None, 1)):
            from_file = load_image(path, size, channels)
            from_bytes = decode_image_bytes(path.read_bytes(), size, channels, max_pixels=10_000)
            assert from_file.dtype == from_bytes.dtype == np.float32
            np.testing.assert_array_equal(from_file, from_bytes)


def test_decode_rejects_non_images_and_bombs() -> None:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(DataError, match="uploaded image: not a readable image"):
        decode_image_bytes(b"<html>hello</html>", 8, 3)
    buffer = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buffer, format="PNG")  # 9 Mpx of zeros compress to a few KiB
    bomb = buffer.getvalue()
    assert len(bomb) < 100_000
    with pytest.raises(DataError) as exc:
        decode_image_bytes(bomb, 8, 3, max_pixels=1_000_000)
    assert "3000x3000 = 9000000 pixels, over the limit of 1000000" in one_line(exc)
    # Pillow's process-wide limit is left as it was.
    assert Image.MAX_IMAGE_PIXELS == pillow_limit
    assert decode_image_bytes(bomb, 8, 1, max_pixels=9_000_000).shape == (1, 8, 8)


def test_load_mask_binarises_and_uses_nearest(tmp_path: Path, tools) -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 200  # > 127: defect
    mask[0, 0] = 100  # <= 127: background
    path = tools.write(tmp_path / "m.png", mask)
    out = load_mask(path, 16)
    assert out.shape == (16, 16) and out.dtype == np.float32
    assert set(np.unique(out).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(out[:, 8:], 1.0)
    np.testing.assert_array_equal(out[:, :8], 0.0)
    assert load_mask(path, None).shape == (8, 8)
    rgb = tools.write(tmp_path / "rgb_mask.png", np.stack([tools.square_mask(8)] * 3, axis=2))
    np.testing.assert_array_equal(mask_array(rgb), tools.square_mask(8))


def _float_tiff(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.float32), mode="F").save(buffer, format="TIFF")
    return buffer.getvalue()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_images_with_non_finite_pixels_are_refused(tmp_path: Path, bad: float) -> None:
    """A float TIFF of NaN used to decode to a NaN map that scored as "not defective" (issue 20)."""
    values = np.full((12, 12), 0.5, np.float32)
    values[3, 4] = bad
    data = _float_tiff(values)
    with pytest.raises(DataError) as exc:
        decode_image_bytes(data, 8, 3, name="instances[0].image_b64")
    assert one_line(exc) == (
        "instances[0].image_b64: 1 of 144 pixels are NaN or infinite; expected finite values (a float image in [0, 1])"
    )
    path = tmp_path / "nan.tiff"
    path.write_bytes(data)
    with pytest.raises(DataError, match=f"{path}: 1 of 144 pixels are NaN or infinite"):
        load_image(path, 8, 3)
    with pytest.raises(DataError, match=f"{path}: 1 of 144 pixels are NaN or infinite"):
        mask_array(path)
    finite = _float_tiff(np.full((12, 12), 0.25, np.float32))  # finite float images still load
    np.testing.assert_allclose(decode_image_bytes(finite, 12, 1), 0.25)

"""`texinspect predict` on bad image files: one line naming the file, never a score (issue 20)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from texinspect.cli import main
from texinspect.config import load_config
from texinspect.errors import DataError
from texinspect.models import family_module
from texinspect.models.artifact import ModelCard, save_detector
from texinspect.prediction import predict

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained smoke RB-AE artifact: the image is refused before the network runs."""
    config = load_config(PARAMS, {"device": "cpu"}, profile="smoke")
    detector = family_module("rbae").build(config)
    card = ModelCard(
        family="rbae",
        config=config.to_dict(),
        image_size=config.data.image_size,
        channels=config.data.channels,
        score_rule=detector.image_score_rule,
    )
    return save_detector(detector, card, tmp_path_factory.mktemp("nan_model") / "model")


def test_predict_refuses_a_float_tiff_of_nan_naming_the_file(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((40, 40), np.nan, np.float32), mode="F").save(images / "nan.tif")
    with pytest.raises(DataError, match=r"nan\.tif: 1600 of 1600 pixels are NaN or infinite"):
        predict(model_dir, images, tmp_path / "pred", device="cpu")
    code = main(["predict", "--model", str(model_dir), "--data", str(images), "--out", str(tmp_path / "cli")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {images / 'nan.tif'}: 1600 of 1600 pixels are NaN or infinite; "
        "expected finite values (a float image in [0, 1])"
    ]
    assert not (tmp_path / "cli" / "scores.csv").exists()


def test_an_unwritable_output_is_one_line(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Writes outside texinspect.outputs (predict's maps and tables) fail in one line too."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(images / "ok.png")
    taken = tmp_path / "taken"
    taken.write_text("a file where the output folder should be")
    assert main(["predict", "--model", str(model_dir), "--data", str(images), "--out", str(taken)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: cannot write {taken}: a file is in the way where a folder is needed; "
        "remove that file or choose another output folder"
    ]

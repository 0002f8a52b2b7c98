"""prepare_training_data: the config's data keys reach the training pairs every family learns from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from texinspect.config import load_config
from texinspect.data.sample import make_sample_dataset
from texinspect.errors import ConfigError
from texinspect.training.common import prepare_training_data

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("training_data") / "data"
    make_sample_dataset(root, n_train=12, n_test_good=1, n_test_defect_per_type=1, size=32, seed=5)
    return root


def _config(root: Path, **extra):
    return load_config(REPO / "params.yaml", {"data.root": str(root), "data.image_size": 32,
                                              "synthesis.texture_pool": "", **extra})


def test_gain_jitter_reaches_the_training_pairs_and_leaves_held_out_normals_as_they_are(data_root: Path) -> None:
    plain = prepare_training_data(_config(data_root))
    relit = prepare_training_data(_config(data_root, **{"data.gain_jitter": 0.4}))
    assert plain.synthetic.gain_jitter == 0.0 and relit.synthetic.gain_jitter == 0.4
    changed = sum(not torch.equal(relit.synthetic[i]["image"], relit.train[i]["image"]) for i in range(len(relit.train)))
    assert changed == len(relit.train)  # every training normal gets its own gain
    for i in range(len(plain.val)):  # selection and calibration see the images as they are
        assert torch.equal(plain.val[i]["image"], relit.val[i]["image"])


def test_a_bad_gain_jitter_names_the_key(data_root: Path) -> None:
    with pytest.raises(ConfigError, match="data.gain_jitter"):
        prepare_training_data(_config(data_root, **{"data.gain_jitter": -0.2}))

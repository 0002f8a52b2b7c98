"""The sweep: section: search-space dimensions and settings, and errors that name the key."""

from __future__ import annotations

import optuna
import pytest

from texinspect.config import Config
from texinspect.errors import ConfigError
from texinspect.tuning.settings import parse_sweep_settings
from texinspect.tuning.space import parse_space


def _space(entries: dict, model: str = "rbae"):
    return parse_space({model: entries}, model, Config())


def _sample(space, seed: int = 0) -> dict:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), direction="maximize")
    return space.suggest(study.ask())


def test_every_kind_of_dimension_gives_valid_config_values() -> None:
    space = _space(
        {
            "train.lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
            "fmrnet.memory_size": {"type": "int", "low": 64, "high": 512, "step": 64},
            "rbae.patch_sizes": {"type": "categorical", "choices": [[2, 4], [2], [4, 8]]},
            "rbae.msfdm_lambdas": {"type": "simplex", "low": 0.05, "high": 1.0},
            "synthesis.transparency_min": {"type": "float", "low": 0.05, "high": 0.5},
        }
    )
    for seed in range(5):
        values = _sample(space, seed)
        config = Config().with_overrides(values)
        assert 1e-5 <= config.train.lr <= 1e-3
        assert config.fmrnet.memory_size % 64 == 0 and 64 <= config.fmrnet.memory_size <= 512
        assert config.rbae.patch_sizes in ([2, 4], [2], [4, 8])
        assert len(config.rbae.msfdm_lambdas) == 3 and sum(config.rbae.msfdm_lambdas) == pytest.approx(1.0, abs=1e-5)
        assert min(config.rbae.msfdm_lambdas) > 0


def test_list_choices_are_stored_as_text_and_map_back() -> None:
    space = _space({"rbae.patch_sizes": {"type": "categorical", "choices": [[2, 4], [1, 2, 4]]}})
    trial = optuna.trial.FixedTrial({"rbae.patch_sizes": "[1, 2, 4]"})
    assert space.suggest(trial) == {"rbae.patch_sizes": [1, 2, 4]}


@pytest.mark.parametrize(
    ("key", "spec", "message"),
    [
        ("train.learning_rate", {"type": "float", "low": 0.1, "high": 1.0}, "sweep.space.rbae.train.learning_rate.*not a config key"),
        ("data.image_size", {"type": "int", "low": 64, "high": 128}, "cannot be swept"),
        ("seed", {"type": "int", "low": 0, "high": 3}, "cannot be swept"),
        ("train.lr", {"type": "gaussian", "low": 0.1, "high": 1.0}, "train.lr.type"),
        ("train.lr", {"type": "float", "low": 1.0, "high": 0.1}, "low < high"),
        ("train.lr", {"type": "float", "low": 0.0, "high": 0.1, "log": True}, "log scale needs low > 0"),
        ("train.lr", {"type": "float", "low": 0.1, "high": 1.0, "lo": 3}, "train.lr.lo.*not a field"),
        ("train.lr", {"low": 0.1, "high": 1.0}, "with 'type'"),
        ("fmrnet.memory_size", {"type": "float", "low": 64, "high": 512}, "memory_size.*expected an integer"),
        ("fmrnet.memory_size", {"type": "int", "low": 64, "high": 512.5}, "integer low/high/step"),
        ("rbae.patch_sizes", {"type": "categorical", "choices": []}, "patch_sizes.choices"),
        ("rbae.patch_sizes", {"type": "categorical", "choices": [[2, 4], "big"]}, "patch_sizes.*expected a list"),
        ("train.lr", {"type": "simplex"}, "simplex needs a config key holding a list"),
        ("rbae.msfdm_lambdas", {"type": "simplex", "low": 0.0}, "0 < low < high"),
    ],
)
def test_bad_dimensions_name_the_key(key: str, spec: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _space({key: spec})


def test_a_model_without_a_space_is_an_error() -> None:
    with pytest.raises(ConfigError, match="sweep.space.fmrnet.*no search space"):
        parse_space({"rbae": {"train.lr": {"type": "float", "low": 0.1, "high": 1.0}}}, "fmrnet", Config())


def test_space_signature_changes_with_the_space() -> None:
    a = _space({"train.lr": {"type": "float", "low": 0.1, "high": 1.0}})
    b = _space({"train.lr": {"type": "float", "low": 0.1, "high": 2.0}})
    assert a.signature() == _space({"train.lr": {"type": "float", "low": 0.1, "high": 1.0}}).signature()
    assert a.signature() != b.signature()


def test_settings_defaults_and_errors_name_the_key() -> None:
    s = parse_sweep_settings({"trials": 7, "pruner": {"kind": "none"}})
    assert s.trials == 7 and s.pruner.kind == "none" and s.metric == "pixel_auroc" and s.sampler.kind == "tpe"
    with pytest.raises(ConfigError, match="sweep.pruner.kinds"):
        parse_sweep_settings({"pruner": {"kinds": "median"}})
    with pytest.raises(ConfigError, match="sweep.metric"):
        parse_sweep_settings({"metric": "f1"})
    with pytest.raises(ConfigError, match="sweep.validation.images"):
        parse_sweep_settings({"validation": {"images": 1}})
    with pytest.raises(ConfigError, match="sweep.trials"):
        parse_sweep_settings({"trials": "many"})


def test_the_repository_params_file_has_a_valid_space_for_both_models() -> None:
    from pathlib import Path

    from texinspect.config import load_config
    from texinspect.tuning.settings import load_sweep_settings

    params = Path(__file__).resolve().parents[2] / "params.yaml"
    settings = load_sweep_settings(params)
    for model in ("rbae", "fmrnet"):
        base = load_config(params, [f"model={model}"])
        space = parse_space(settings.space, model, base)
        assert space.keys
        base.with_overrides(_sample(space))

"""Config loading: paper defaults, profiles, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from texinspect.config import Config, load_config, load_profiles
from texinspect.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"


def test_params_yaml_matches_dataclass_defaults() -> None:
    """params.yaml holds every key, with the same values as the code's defaults (the papers')."""
    from_file = load_config(PARAMS).to_dict()
    assert from_file == Config().to_dict()


def test_paper_defaults() -> None:
    cfg = load_config(PARAMS)
    assert cfg.rbae.loss.rec1 == 100 and cfg.rbae.loss.pixel_dis == 1
    assert cfg.rbae.patch_sizes == [2, 4] and cfg.rbae.ffm_kernel == 5 and cfg.rbae.ffm_channels == 64
    assert cfg.rbae.msfdm_lambdas == [0.2, 0.2, 0.6]
    assert cfg.train.lr == 1e-4 and cfg.train.weight_decay == 1e-5
    assert (cfg.train.phase1_epochs, cfg.train.phase2_epochs) == (400, 200)
    assert cfg.fmrnet.memory_size == 512 and cfg.fmrnet.texton_size == 2 and cfg.fmrnet.lr == 1e-3
    assert cfg.fmrnet.patch_size == 64


def test_overrides_are_typed() -> None:
    cfg = load_config(PARAMS, ["train.batch_size=3", "rbae.patch_sizes=[2, 8]", "train.lr=0.01", "model=fmrnet"])
    assert cfg.train.batch_size == 3
    assert cfg.rbae.patch_sizes == [2, 8]
    assert cfg.train.lr == pytest.approx(0.01)
    assert cfg.model == "fmrnet"


def test_int_given_for_float_is_accepted_and_converted() -> None:
    cfg = load_config(PARAMS, ["train.lr=1"])
    assert isinstance(cfg.train.lr, float)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.batchsize=3", "train.batchsize"),
        ("nosuch.key=1", "nosuch"),
        ("train.batch_size=three", "train.batch_size"),
        ("train.progress=3", "train.progress"),
        ("model=resnet", "model"),
        ("rbae.patch_sizes=[2, x]", "rbae.patch_sizes[1]"),
        ("rbae.loss.rec1=high", "rbae.loss.rec1"),
    ],
)
def test_bad_overrides_name_the_key(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(PARAMS, [override])
    assert fragment in str(err.value)


def test_override_without_equals_is_an_error() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        load_config(PARAMS, ["train.batch_size"])


def test_profiles_apply_and_unknown_profile_errors() -> None:
    profiles = load_profiles(PARAMS)
    assert {"smoke", "cpu"} <= set(profiles)
    smoke = load_config(PARAMS, profile="smoke")
    assert smoke.data.image_size == profiles["smoke"]["data"]["image_size"]
    # --set wins over the profile
    both = load_config(PARAMS, ["data.image_size=48"], profile="smoke")
    assert both.data.image_size == 48
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_config(PARAMS, profile="nope")


def test_every_profile_loads() -> None:
    for name in load_profiles(PARAMS):
        load_config(PARAMS, profile=name)


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match="train.epochz"):
        load_config(bad)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_roundtrip_through_flat_keys() -> None:
    cfg = load_config(PARAMS)
    flat = cfg.flat()
    assert flat["rbae.loss.seg"] == 1.0
    again = Config().with_overrides(flat)
    assert again == cfg


# --------------------------------------------------------------------------- value ranges (issue 20)


def _numeric_defaults() -> dict[str, object]:
    from texinspect.config_ranges import is_numeric

    return {k: v for k, v in Config().flat().items() if is_numeric(v)}


def test_every_numeric_key_of_params_yaml_has_a_range_rule() -> None:
    """A new numeric key without a rule would again accept any value: each one must have a rule,
    and every rule must name a key that exists."""
    from texinspect.config_ranges import rules

    RULES = rules()

    numeric = _numeric_defaults()
    from_file = {k for k, v in load_config(PARAMS).flat().items() if k in numeric}
    assert from_file == set(numeric)  # params.yaml holds them all (test above: same values)
    assert sorted(set(numeric) - set(RULES)) == []
    assert sorted(set(RULES) - set(numeric)) == []


def _bad_values() -> list[tuple[str, object]]:
    from texinspect.config_ranges import rules

    RULES = rules()

    defaults = _numeric_defaults()
    cases = []
    for key, rule in RULES.items():
        default = defaults[key]
        sample = default[0] if isinstance(default, list) else default
        for bad in rule.outside():
            if isinstance(sample, int):  # int keys: the bound itself as an int (NaN is a type error)
                if bad != bad:
                    continue
                bad = int(bad) if float(bad).is_integer() else bad
                if not isinstance(bad, int):
                    continue
            cases.append((key, [bad] if isinstance(default, list) else bad))
    return cases


@pytest.mark.parametrize(("key", "bad"), _bad_values(), ids=lambda v: str(v))
def test_every_numeric_key_refuses_values_out_of_its_range(key: str, bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        Config().with_overrides({key: bad})  # the same check as load_config, without reading the file
    assert f"'{key}" in str(err.value) and "expected" in str(err.value)


def test_defaults_and_profiles_are_in_range() -> None:
    from texinspect.config_ranges import validate_ranges

    validate_ranges(Config())
    for name in load_profiles(PARAMS):
        validate_ranges(load_config(PARAMS, profile=name))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=0", "config key 'train.batch_size': expected a value >= 1, got 0"),
        ("train.batch_size=-4", "config key 'train.batch_size': expected a value >= 1, got -4"),
        ("train.max_minutes=-1", "config key 'train.max_minutes': expected a value >= 0"),
        ("train.checkpoint_every=-1", "config key 'train.checkpoint_every': expected a value >= 0"),
        ("synthesis.defect_probability=1.5", "'synthesis.defect_probability': expected a value in [0, 1]"),
        ("rbae.widths=[8, 0, 16, 32, 32]", "'rbae.widths[1]': expected a value >= 1, got 0"),
        ("data.channels=2", "'data.channels': expected one of [1, 3], got 2"),
        ("train.lr=.nan", "'train.lr': expected a value > 0, got nan"),
    ],
)
def test_out_of_range_overrides_name_key_rule_and_value(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(PARAMS, [override], profile="smoke")
    assert message in str(err.value)


def test_cli_refuses_batch_size_zero_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from texinspect.cli import main

    out = tmp_path / "run"
    code = main(["train", "--config", str(PARAMS), "--profile", "smoke", "--out", str(out), "--no-track",
                 "--set", "train.batch_size=0"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: config key 'train.batch_size': expected a value >= 1, got 0"]
    assert not out.exists()


def test_a_profiles_by_model_keys_apply_to_that_family_only_and_overrides_still_win(tmp_path) -> None:
    """``profiles.<p>.by_model.<family>`` (issue 17): keys measured for one family apply to it alone.
    The real cpu profile's DRAEM-style synthesis is every family's (one synthetic validation set)."""
    path = tmp_path / "params.yaml"
    path.write_text(
        "model: rbae\nsynthesis: {defect_probability: 0.5}\ntrain: {lr: 1.0e-4}\n"
        "profiles:\n  p:\n    train: {lr: 1.0e-3}\n    by_model:\n      fmrnet: {synthesis: {defect_probability: 0.9}}\n"
    )
    assert load_config(path, ["model=rbae"], "p").synthesis.defect_probability == 0.5
    fm = load_config(path, ["model=fmrnet"], "p")
    assert fm.synthesis.defect_probability == 0.9 and fm.train.lr == 1.0e-3
    assert load_config(path, {"model": "fmrnet", "synthesis.defect_probability": 0.2}, "p").synthesis.defect_probability == 0.2
    assert load_config(path, ["model=fmrnet"]).synthesis.defect_probability == 0.5  # no profile: no family keys
    real = Path(__file__).resolve().parents[1] / "params.yaml"
    rb, fm = load_config(real, ["model=rbae"], "cpu"), load_config(real, ["model=fmrnet"], "cpu")
    assert rb.synthesis.destructive_probability == 0.0 and rb.synthesis.mask.local_probability == 0.0
    assert rb.synthesis == fm.synthesis == load_config(real, ["model=aessim"], "cpu").synthesis
    assert fm.synthesis != load_config(real, ["model=fmrnet"]).synthesis  # not the paper-default synthesis
    # round 6: FMR-Net's training normals are relit (data.gain_jitter), RB-AE's are not (not measured for it)
    assert fm.data.gain_jitter > 0.0 and rb.data.gain_jitter == 0.0 and load_config(real, ["model=fmrnet"]).data.gain_jitter == 0.0


def test_a_profile_extends_another_and_its_own_keys_win(tmp_path: Path) -> None:
    """``extends`` (issue 21): the demo profile is the cpu profile on the sample, not a copy of it."""
    path = tmp_path / "params.yaml"
    path.write_text(
        "model: rbae\ntrain: {lr: 1.0e-4, batch_size: 8}\nsynthesis: {defect_probability: 0.5}\n"
        "profiles:\n"
        "  base:\n    train: {lr: 1.0e-3, batch_size: 4}\n"
        "    by_model:\n      rbae: {synthesis: {defect_probability: 0.6}}\n      fmrnet: {train: {batch_size: 2}}\n"
        "  child:\n    extends: base\n    train: {batch_size: 16}\n    by_model:\n      rbae: {train: {lr: 5.0e-4}}\n"
        "  loop_a: {extends: loop_b}\n  loop_b: {extends: loop_a}\n"
        "  orphan: {extends: missing}\n"
    )
    child = load_config(path, profile="child")
    assert child.train.batch_size == 16  # the child's own key wins over the base's
    assert child.train.lr == 5.0e-4  # the child's by_model key wins over the base's plain key
    assert child.synthesis.defect_probability == 0.6  # the base's by_model keys are inherited
    assert load_config(path, ["model=fmrnet"], "child").train.batch_size == 2  # family keys go on last
    assert load_config(path, ["train.batch_size=3"], "child").train.batch_size == 3  # --set still wins
    with pytest.raises(ConfigError, match="loop: loop_a -> loop_b -> loop_a"):
        load_config(path, profile="loop_a")
    with pytest.raises(ConfigError, match="profile 'orphan' extends 'missing', which is not a profile"):
        load_config(path, profile="orphan")

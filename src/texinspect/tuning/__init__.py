"""Optuna sweeps over the hyper-parameters in params.yaml (``texinspect sweep``).

``plan_sweep`` reads params.yaml (the config and its ``sweep:`` section) and checks the search
space; ``run_sweep`` runs or resumes the study and writes the report (best params file, trial
table, plots). See ``docs/sweeps.md``.
"""

from texinspect.tuning.runner import SweepPlan, SweepResult, plan_sweep, run_sweep
from texinspect.tuning.settings import SweepSettings, load_sweep_settings, parse_sweep_settings
from texinspect.tuning.space import Dimension, SearchSpace, parse_space

__all__ = [
    "Dimension",
    "SearchSpace",
    "SweepPlan",
    "SweepResult",
    "SweepSettings",
    "load_sweep_settings",
    "parse_space",
    "parse_sweep_settings",
    "plan_sweep",
    "run_sweep",
]

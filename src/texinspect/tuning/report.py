"""What a sweep leaves in its folder: the best params file, a trial table, plots, a summary.

``best_params.yaml``   the best trial's whole resolved config (base params + profile + overrides
                       + the trial's values): ``texinspect train --config best_params.yaml``
                       trains exactly that configuration.
``best_overrides.yaml`` only the searched keys and their best values: what to promote into
                       params.yaml (the DVC params) by hand.
``trials.csv``         one row per trial: number, state, value, metrics, searched values, error.
``plots/history.png``, ``plots/importance.png`` (>= 2 completed trials), ``plots/intermediate.png``
                       Optuna's matplotlib plots.
``sweep_summary.json`` counts by state, the best trial, where everything is.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from optuna.trial import FrozenTrial, TrialState

from texinspect.config import Config
from texinspect.training.validation import METRICS
from texinspect.tuning.objective import ERROR, OVERRIDES
from texinspect.tuning.study import resume_of, superseded

log = logging.getLogger(__name__)

BEST_PARAMS = "best_params.yaml"
BEST_OVERRIDES = "best_overrides.yaml"
TRIALS_CSV = "trials.csv"
SUMMARY = "sweep_summary.json"
PLOTS = "plots"


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def best_config(study: optuna.Study, base: Config) -> tuple[Config, FrozenTrial] | None:
    trial = best_trial(study)
    if trial is None:
        return None
    return base.with_overrides(dict(trial.user_attrs.get(OVERRIDES, {}))), trial


def write_best_params(study: optuna.Study, base: Config, out_dir: str | Path) -> Path | None:
    """Write ``best_params.yaml`` and ``best_overrides.yaml``; None while no trial has completed."""
    found = best_config(study, base)
    if found is None:
        return None
    config, trial = found
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = study.user_attrs.get("metric", "value")
    header = (
        f"# Best trial {trial.number} of Optuna study '{study.study_name}': {metric} = {trial.value:.6g}\n"
        f"# on the sweep's validation set (never the test labels). The whole resolved config:\n"
        f"#   texinspect train --config {BEST_PARAMS} --out runs/best\n"
    )
    path = out / BEST_PARAMS
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + yaml.safe_dump(config.to_dict(), sort_keys=False))
    tmp.replace(path)
    overrides = dict(trial.user_attrs.get(OVERRIDES, {}))
    note = (
        f"# Searched keys of best trial {trial.number} ({metric} = {trial.value:.6g}), as dotted keys.\n"
        "# Promote them by copying the values into params.yaml, or per run: --set key=value.\n"
    )
    (out / BEST_OVERRIDES).write_text(note + yaml.safe_dump(overrides, sort_keys=False))
    return path


def trials_table(study: optuna.Study) -> pd.DataFrame:
    trials = study.get_trials(deepcopy=False)
    gone = superseded(trials)
    rows: list[dict[str, Any]] = []
    for t in trials:
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "seconds": t.duration.total_seconds() if t.duration else None,
            "resumed_by_later_trial": t.number in gone,
            "resume_of": resume_of(t),
        }
        row.update({m: t.user_attrs.get(m) for m in METRICS})
        row.update({f"param.{k}": _cell(v) for k, v in t.user_attrs.get(OVERRIDES, {}).items()})
        row["error"] = t.user_attrs.get(ERROR, "")
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def save_plots(study: optuna.Study, out_dir: str | Path) -> list[Path]:
    """Optuna's history, importance (>= 2 completed trials) and intermediate-value plots as PNGs."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    folder = Path(out_dir) / PLOTS
    folder.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots: list[tuple[str, Any]] = []
    if complete:
        plots.append(("history.png", ovm.plot_optimization_history))
    if len(complete) >= 2:
        plots.append(("importance.png", ovm.plot_param_importances))
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        plots.append(("intermediate.png", ovm.plot_intermediate_values))
    target = str(study.user_attrs.get("metric", "Objective Value"))
    written = []
    for name, plot in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study) if name == "intermediate.png" else plot(study, target_name=target)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(folder / name, dpi=100)
            plt.close(fig)
            written.append(folder / name)
        except Exception as exc:  # noqa: BLE001 - e.g. importance when every trial drew the same values
            log.warning("plot %s skipped: %s", name, exc)
            plt.close("all")
    return written


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def write_report(study: optuna.Study, base: Config, out_dir: str | Path, storage: str, plots: bool = True) -> dict[str, Any]:
    """Every file above; returns the summary (also written to ``sweep_summary.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    best_path = write_best_params(study, base, out)
    table = trials_table(study)
    table.to_csv(out / TRIALS_CSV, index=False)
    images = save_plots(study, out) if plots else []
    best = best_trial(study)
    summary: dict[str, Any] = {
        "study": study.study_name,
        "storage": storage,
        "model": study.user_attrs.get("model"),
        "metric": study.user_attrs.get("metric"),
        "validation": study.user_attrs.get("validation"),
        "states": state_counts(study),
        "best": None
        if best is None
        else {
            "trial": best.number,
            "value": best.value,
            "metrics": {m: best.user_attrs.get(m) for m in METRICS},
            "overrides": best.user_attrs.get(OVERRIDES, {}),
            "run_dir": best.user_attrs.get("run_dir"),
        },
        "files": {
            "best_params": str(best_path) if best_path else None,
            "trials": str(out / TRIALS_CSV),
            "plots": [str(p) for p in images],
        },
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
    return summary

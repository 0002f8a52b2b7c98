"""MLflow tracking and Model Registry for texinspect runs (see ``docs/tracking.md``).

One line for each caller:

* trainers, live:  ``with tracking.run(config, name, kind="train", run_dir=out) as tr:``
  then ``run_phase(..., on_log=tr.log_losses)``, ``tr.log_artifacts(dir)``, ``tr.log_model(dir)``
* a finished run folder:  ``run_id = tracking.track_training_run(config, RUN, RUN/"model", P/"metrics.json")``
* the registry gate:  ``decision = tracking.register_and_gate(run_id, P/"metrics.json", config)``
* serving:  ``tracking.download_model("models:/texinspect@champion")`` -> a model folder

If the tracking server is unreachable, runs degrade to a warning and ``tracking_offline.json``
in the run folder; the registry gate raises ``TrackingUnavailable`` (it cannot decide offline).
"""

from texinspect.tracking.backend import Backend, TrackingError, TrackingUnavailable, resolve_backend
from texinspect.tracking.registry import (
    CHAMPION,
    GateDecision,
    champion_uri,
    decide,
    download_model,
    register_and_gate,
)
from texinspect.tracking.runs import log_finished_run, track_evaluation, track_training_run
from texinspect.tracking.session import OFFLINE_FILE, RUN_FILE, Tracker, run, start

__all__ = [
    "CHAMPION",
    "OFFLINE_FILE",
    "RUN_FILE",
    "Backend",
    "GateDecision",
    "Tracker",
    "TrackingError",
    "TrackingUnavailable",
    "champion_uri",
    "decide",
    "download_model",
    "log_finished_run",
    "register_and_gate",
    "resolve_backend",
    "run",
    "start",
    "track_evaluation",
    "track_training_run",
]

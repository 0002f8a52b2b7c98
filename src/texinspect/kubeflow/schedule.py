"""Scheduled retraining: a KFP recurring run of the compiled pipeline, made with ``kfp.Client``.

One run at a time (``max_concurrency=1``: a slow training never overlaps the next one), no
catch-up (a paused schedule does not fire every missed slot when resumed), and the caching the
pipeline was compiled with: every cache key holds the dataset's content hash (the never-cached
``dataset-fingerprint`` step), so new data behind ``data_uri`` retrains and unchanged data is
not trained again. A recurring
run of the same name in the experiment is replaced, so re-running this is safe (the
``k8s/base/recurring-run-job.yaml`` Job does exactly that).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from texinspect.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CRON = "0 0 3 * * 0"  # KFP cron has 6 fields (seconds first): Sundays 03:00
DEFAULT_NAME = "texinspect-retrain"
DEFAULT_EXPERIMENT = "texinspect"


def check_cron(cron: str) -> str:
    """KFP (robfig/cron) wants 6 fields with seconds first; 5-field crontab lines are a common slip."""
    fields = cron.split()
    if len(fields) != 6:
        raise ConfigError(
            f"cron expression '{cron}' has {len(fields)} fields; Kubeflow wants 6 with seconds first, "
            f"e.g. '{DEFAULT_CRON}' (Sundays 03:00)"
        )
    return " ".join(fields)


def make_client(host: str, namespace: str | None = None, token: str | None = None) -> Any:
    """``kfp.Client`` for ``host``; in a pod the service-account token volume authenticates it."""
    import kfp

    kwargs: dict[str, Any] = {"host": host, "existing_token": token}
    if namespace:
        kwargs["namespace"] = namespace
    return kfp.Client(**kwargs)


def create_recurring_run(
    client: Any,
    package_path: str | Path,
    params: dict[str, Any],
    name: str = DEFAULT_NAME,
    experiment: str = DEFAULT_EXPERIMENT,
    cron: str = DEFAULT_CRON,
    namespace: str | None = None,
    service_account: str | None = None,
    replace: bool = True,
) -> str:
    """Create (or replace) the recurring run; returns its id."""
    package = Path(package_path)
    if not package.is_file():
        raise ConfigError(f"pipeline package not found: {package} (run `texinspect pipeline compile`)")
    if not params.get("data_uri"):
        raise ConfigError("the recurring run needs the pipeline parameter data_uri (where the dataset lives)")
    cron = check_cron(cron)
    exp = client.create_experiment(name=experiment, namespace=namespace)
    if replace:
        for existing in _recurring_runs(client, exp.experiment_id, namespace):
            if existing.display_name == name:
                log.info("replacing recurring run %s (%s)", name, existing.recurring_run_id)
                client.delete_recurring_run(existing.recurring_run_id)
    job = client.create_recurring_run(
        experiment_id=exp.experiment_id,
        job_name=name,
        description="texinspect scheduled retraining (texinspect pipeline schedule)",
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        params=params,
        pipeline_package_path=str(package),
        enable_caching=None,  # the compiled per-task options: cache keys hold the data's content hash
        service_account=service_account,
    )
    log.info(
        "recurring run %s (%s): cron '%s' in experiment %s", name, job.recurring_run_id, cron, experiment
    )
    return str(job.recurring_run_id)


def _recurring_runs(client: Any, experiment_id: str, namespace: str | None) -> list[Any]:
    found: list[Any] = []
    token = ""
    while True:
        page = client.list_recurring_runs(
            page_token=token, page_size=100, experiment_id=experiment_id, namespace=namespace
        )
        found.extend(page.recurring_runs or [])
        token = page.next_page_token or ""
        if not token:
            return found


def submit_run(
    client: Any,
    package_path: str | Path,
    params: dict[str, Any],
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
) -> str:
    """One run of the compiled pipeline on the cluster; returns the run id."""
    result = client.create_run_from_pipeline_package(
        str(package_path),
        arguments=params,
        run_name=run_name,
        experiment_name=experiment,
        namespace=namespace,
        service_account=service_account,
        enable_caching=None,  # the compiled per-task options (dataset-fingerprint, register, deploy: never)
    )
    return str(result.run_id)

"""Fixtures of the command-line tests: ``register`` needs the tracking tests' fake runs and
their isolated MLflow environment."""

from tests.tracking.conftest import (  # noqa: F401
    _isolated_environment,
    data_root,
    fake_run,
    mlflow_db_template,
    tracking_config,
)

#!/usr/bin/env bash
# MLflow tracking server for texinspect, run from the repository root: `mlflow/serve.sh`.
#
# Defaults serve the same SQLite file and artifact folder that runs use without a server
# (params.yaml `tracking:`), on 127.0.0.1:5000 only. Each setting can be overridden by the
# environment, which is how the team setup in mlflow/README.md (Postgres + S3) uses it:
#   MLFLOW_HOST                    interface to bind        (default 127.0.0.1)
#   MLFLOW_PORT                    port                     (default 5000)
#   MLFLOW_BACKEND_STORE_URI       runs + registry database (default sqlite:///mlflow.db)
#   MLFLOW_ARTIFACTS_DESTINATION   where artifacts are kept (default ./mlartifacts; or s3://bucket/prefix)
#   MLFLOW_WORKERS                 server worker processes  (default 1)
#   MLFLOW_SERVER_ALLOWED_HOSTS    Host headers to accept, read by MLflow itself
#                                  (default: localhost and private IPs; patterns like mlflow:*)
#   AWS_ENDPOINT_URL / MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
#                                  for an s3:// artifacts destination (MinIO, SeaweedFS, Ceph, AWS)
# Clients then set MLFLOW_TRACKING_URI=http://HOST:PORT; artifacts are proxied by the server
# (--serve-artifacts), so clients need no S3 credentials of their own.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
if [[ -n "${MLFLOW_BIN:-}" ]]; then
  mlflow_bin="$MLFLOW_BIN"
elif [[ -x "$repo/.venv/bin/mlflow" ]]; then
  mlflow_bin="$repo/.venv/bin/mlflow"
else
  mlflow_bin="mlflow"
fi

# MLflow 3 starts seven background job workers (GenAI evaluation jobs) unless told not to;
# texinspect uses none of them, and they cost a Python process each.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

# An S3 destination needs an endpoint for anything but AWS; MLflow reads MLFLOW_S3_ENDPOINT_URL.
if [[ -z "${MLFLOW_S3_ENDPOINT_URL:-}" && -n "${AWS_ENDPOINT_URL:-}" ]]; then
  export MLFLOW_S3_ENDPOINT_URL="$AWS_ENDPOINT_URL"
fi

args=(
  server
  --host "${MLFLOW_HOST:-127.0.0.1}"
  --port "${MLFLOW_PORT:-5000}"
  --backend-store-uri "${MLFLOW_BACKEND_STORE_URI:-sqlite:///mlflow.db}"
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-./mlartifacts}"
  --serve-artifacts
  --workers "${MLFLOW_WORKERS:-1}"
)
echo "mlflow ${args[*]}" >&2
exec "$mlflow_bin" "${args[@]}" "$@"

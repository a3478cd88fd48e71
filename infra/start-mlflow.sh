#!/usr/bin/env bash
# MLflow tracking server + model registry on this machine: http://127.0.0.1:5000.
# Backend: the SQLite file the pipeline writes by default (<repo>/mlflow.db), so runs logged
# without the server are visible too; artifacts logged through the server go to <repo>/mlartifacts.
# To log through the server instead of the file: export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
set -euo pipefail
root="${ELECTRA_PIPELINE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
exec mlflow server \
  --backend-store-uri "sqlite:///${root}/mlflow.db" \
  --artifacts-destination "${root}/mlartifacts" \
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}"

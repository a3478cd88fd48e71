#!/usr/bin/env bash
# Prefect server (API + UI) on this machine: http://127.0.0.1:4200, state in ~/.prefect (SQLite).
# It opens the same database that `electra pipeline` uses when no server runs, so earlier runs
# show up too. In each shell that runs flows or workers:
#   export PREFECT_API_URL=http://127.0.0.1:4200/api
set -euo pipefail
export PREFECT_SERVER_ANALYTICS_ENABLED="${PREFECT_SERVER_ANALYTICS_ENABLED:-false}"
exec prefect server start --host "${PREFECT_HOST:-127.0.0.1}" --port "${PREFECT_PORT:-4200}"

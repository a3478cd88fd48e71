#!/usr/bin/env bash
# Prefect server (API + UI) on this machine: http://127.0.0.1:4200, state in ~/.prefect (SQLite).
# It opens the same database that `electra pipeline` uses when no server runs, so earlier runs
# show up too. In each shell that runs flows or workers:
#   export PREFECT_API_URL=http://127.0.0.1:4200/api
set -euo pipefail
export PREFECT_SERVER_ANALYTICS_ENABLED="${PREFECT_SERVER_ANALYTICS_ENABLED:-false}"
host="${PREFECT_HOST:-127.0.0.1}" port="${PREFECT_PORT:-4200}"
# the UI's browser code calls this API address: it must follow the port, or the UI shows
# "Can't connect to Server API" on any port but 4200
export PREFECT_UI_API_URL="${PREFECT_UI_API_URL:-http://${host}:${port}/api}"
exec prefect server start --host "$host" --port "$port"

#!/usr/bin/env bash
# A Prefect worker for the deployments in infra/prefect.yaml (needs a running Prefect server).
#   infra/start-worker.sh              # pool electra-cpu
#   infra/start-worker.sh electra-gpu  # on a GPU machine
# Creates both work pools if missing, (re)deploys every deployment, then polls the pool.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
pool="${1:-electra-cpu}"
export PREFECT_API_URL="${PREFECT_API_URL:-http://127.0.0.1:4200/api}"
export ELECTRA_PIPELINE_DIR="${ELECTRA_PIPELINE_DIR:-$root}"  # where flow runs start (see prefect.yaml)
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
for p in electra-cpu electra-gpu; do
  prefect work-pool inspect "$p" >/dev/null 2>&1 || prefect work-pool create "$p" --type process
done
prefect --no-prompt deploy --all --prefect-file infra/prefect.yaml
exec prefect worker start --pool "$pool"

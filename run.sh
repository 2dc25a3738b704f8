#!/usr/bin/env bash
# One command: set up, create the demo dataset if missing, start the dashboard on 127.0.0.1.
#   ./run.sh                          -> http://127.0.0.1:8501
#   ./run.sh --server.port 8600       -> extra arguments go to `streamlit run`
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
if [ ! -f data/demo.parquet ]; then
  .venv/bin/python -m atft_core.data demo --out data/demo.parquet
fi
exec .venv/bin/python -m streamlit run app.py "$@"

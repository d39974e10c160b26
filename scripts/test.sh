#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run every test: unit tests on tiny models and the real-model tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"

#!/usr/bin/env bash
# The demo gate: private Mosquitto broker, every device simulator, the node; kiosk on :8080.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/smartgate demo "$@"

#!/usr/bin/env bash
# The demo gate: private Mosquitto broker, every device simulator, central, the node; kiosk on :8080.
# Installs only what the demo needs (scripts/setup.sh --demo); the tests' extras come with scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --demo
exec .venv/bin/smartgate demo "$@"

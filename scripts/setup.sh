#!/usr/bin/env bash
# Installs what smartgate needs on a fresh Debian/Ubuntu machine, through apt-get when missing, then a .venv
# with the project.
#   bash scripts/setup.sh          everything the tests need (scripts/test.sh): the demo's set, plus Mosquitto's
#                                  clients, Chromium, PostgreSQL and the test tools
#   bash scripts/setup.sh --demo   only what the demo needs (scripts/demo.sh): Mosquitto, python3-venv, the
#                                  fonts its simulated camera draws plates with, and the project itself
set -euo pipefail
cd "$(dirname "$0")/.."
mode=tests
[ "${1:-}" = "--demo" ] && mode=demo

missing=()
# The demo's and the tests' private broker.
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# Fonts for the synthetic plates and container codes: the demo's video camera simulator draws each truck with
# them (models/training/fonts.py wants every one, so a seed always draws the same picture); also the vision
# tests and retraining.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || missing+=(fonts-dejavu-core)
[ -f /usr/share/fonts/truetype/liberation2/LiberationSans-Bold.ttf ] || missing+=(fonts-liberation2)
[ -f /usr/share/fonts/truetype/freefont/FreeSansBold.ttf ] || missing+=(fonts-freefont-ttf)
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
[ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || missing+=(fonts-wqy-zenhei)
[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc ] || missing+=(fonts-noto-cjk)
if [ "$mode" = tests ]; then
  # Mosquitto's own client: an independent judge in the device-bus security tests (tests/security/).
  command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
  # Headless Chromium for the kiosk's browser tests (driven by Playwright; never a downloaded browser).
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  # PostgreSQL for the central service's tests: a running server on 127.0.0.1:5432, or initdb/pg_ctl
  # so the tests can start a private one.
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing with apt-get: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"smartgate needs Python 3.11 or newer, this is {sys.version.split()[0]}")
PY

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Sparkplug B payloads (sync/sparkplug.py) through pysparkplug, without its paho-mqtt<2 pin (it would
# replace the paho-mqtt 2.x the node uses; only its protobuf payload classes are used). protobuf comes
# with the project's own requirements.
if [ "$mode" = demo ]; then
  .venv/bin/python -m pip install -q -e .
  # The strong recogniser's ONNX files (models/strong_reader.md) come in rapidocr's wheel; see below.
  .venv/bin/python -m pip install -q --no-deps 'pysparkplug==0.6.1' 'rapidocr_onnxruntime==1.4.4'
  exit 0
fi
.venv/bin/python -m pip install -q -e '.[test,baseline]'
# The vision bench's baseline, without its opencv-python requirement (it would replace the headless
# OpenCV with one that needs libGL); its other requirements come with the "baseline" extra.
.venv/bin/python -m pip install -q --no-deps 'rapidocr_onnxruntime==1.4.4'
.venv/bin/python -m pip install -q --no-deps 'pysparkplug==0.6.1'

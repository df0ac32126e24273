#!/usr/bin/env bash
# Retrain a recogniser on a lent GPU machine, whose image has torch, OpenCV, Pillow and onnx but not
# the Debian fonts the synthetic crops are lettered in.
#
# Here, once:   bash scripts/train_on_gpu.sh pack
#               (copies the font files models/synth/fonts.py names into .cache/fonts, ~45 MB)
# There:        bash scripts/train_on_gpu.sh run containers --out "$OUT/container_reader_second.onnx" --seed 3 ...
#               with .cache/fonts carried; puts the fonts in place, renders on every core, trains on
#               the GPU (`--device auto`), and writes the model, its .training.json, the torch checkpoint and
#               the log beside --out (the log to $LOG instead, when set).
# Then here:    copy the model and its .training.json into models/, run
#               `python -m models.training.quantize models/NAME.onnx` (it trains in float there),
#               `python -m models.training.calibrate`, the bench and `python -m models.training.card`.
set -euo pipefail
cd "$(dirname "$0")/.."
FONTS=.cache/fonts
PY=${PYTHON:-python3}

font_files() {
    "$PY" -c 'from models.synth.fonts import LATIN_FONTS, CJK_FONTS
for path, _ in LATIN_FONTS + CJK_FONTS: print(path)'
}

case "${1:-}" in
    pack)
        font_files | while read -r path; do
            [ -f "$path" ] || { echo "missing $path: run scripts/setup.sh (it installs the fonts)" >&2; exit 1; }
            mkdir -p "$FONTS$(dirname "$path")"
            cp -L "$path" "$FONTS$path"
        done
        du -sh "$FONTS"
        ;;
    run)
        task=${2:?usage: train_on_gpu.sh run plates|containers --out FILE [training options]}
        shift 2
        font_files | while read -r path; do
            if [ ! -f "$path" ]; then
                [ -f "$FONTS$path" ] || { echo "$path: not installed and not carried in $FONTS (run pack here)" >&2; exit 1; }
                mkdir -p "$(dirname "$path")"
                cp "$FONTS$path" "$path"
            fi
        done
        out=""
        for ((i = 1; i <= $#; i++)); do
            if [ "${!i}" = "--out" ]; then j=$((i + 1)); out=${!j}; fi
        done
        [ -n "$out" ] || { echo "give --out FILE (under \$OUT on the device machine)" >&2; exit 2; }
        mkdir -p "$(dirname "$out")"
        log=${LOG:-${out%.onnx}.log}
        "$PY" -c 'import torch; print("torch", torch.__version__, "gpu:", torch.cuda.is_available() and torch.cuda.get_device_name(0))' | tee "$log"
        # --float: the 8-bit quantisation renders calibration crops and needs onnxruntime; it runs here after
        "$PY" -m "models.training.$task" --cache /tmp/smartgate-training --float "$@" 2>&1 | tee -a "$log"
        # the torch checkpoint too, to go on training from it here (`--init FILE.pt`)
        checkpoint=$(sed -n 's/^checkpoint //p' "$log" | tail -1)
        [ -z "$checkpoint" ] || cp "$checkpoint" "$(dirname "$out")/"
        ;;
    *)
        echo "usage: $0 pack | run plates|containers --out FILE [training options]" >&2
        exit 2
        ;;
esac

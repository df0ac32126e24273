#!/usr/bin/env bash
# One call on a lent GPU machine (one GPU, 16 cores) that retrains three recognisers within a fixed
# time: the container reader, a second-opinion container reader (1.25 wide, other crops) and the
# plate reader. Each set is rendered on the cores while the sets rendered before it train on the GPU;
# every run's one-cycle schedule runs on the clock (`--time-limit`) so all of them end by the limit.
#
# Here, once:  bash scripts/train_on_gpu.sh pack
# There:       bash scripts/retrain_on_gpu.sh 480      (device run, carry [".cache/fonts"], timeout ~560 s)
#              logs stream to $OUT/<model>.log; the models, training records and checkpoints come back
#              in $OUT/results.tgz. EXTRA="--samples 3000 --held-out 50" (say) is added to every
#              training command: a trial run of the whole script on a CPU.
# Then here:   unpack into models/, quantise each (`python -m models.training.quantize models/NAME.onnx`),
#              refit the confidence maps (`python -m models.training.calibrate`),
#              run `smartgate bench vision` and `python -m models.training.card --bench FILE`.
set -uo pipefail
cd "$(dirname "$0")/.."
limit=${1:-480}
: "${OUT:?set OUT to the folder whose files come back}"
RESULTS=${RESULTS:-/tmp/retrained}
export PYTHONUNBUFFERED=1
start=$(date +%s)
end=$((start + limit))
left() { echo $((end - $(date +%s))); }
echo "cores: $(nproc); $(grep -m1 'model name' /proc/cpuinfo); limit ${limit} s"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

# train NAME TASK [options]: in the background, with the time that is left, logging to $OUT/NAME.log
train() {
    local name=$1 task=$2
    shift 2
    LOG="$OUT/$name.log" timeout "$(( $(left) + 45 ))" bash scripts/train_on_gpu.sh run "$task" \
        --out "$RESULTS/$name/$name.onnx" --threads 2 --time-limit "$(left)" "$@" ${EXTRA:-} >/dev/null 2>&1 &
    last=$!
}
# until NAME's log says its rendering is over (or the run has ended)
rendered() {
    while ! grep -q '^rendered' "$OUT/$1.log" 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || return 1
        sleep 1
    done
}

cores=$(nproc)  # what this process may use (os.cpu_count() can count the host's)
train container_reader containers --seed 4 --samples 160000 --batch 256 --lr 0.0025 --workers "$cores"
first=$last
rendered container_reader "$first"
train container_reader_second containers --seed 5 --samples 120000 --batch 256 --lr 0.0025 \
    --init models/plate_reader_second.onnx --workers $((cores > 4 ? cores - 2 : 2))
second=$last
rendered container_reader_second "$second"
train plate_reader plates --seed 3 --samples 200000 --batch 256 --lr 0.003 --workers $((cores > 6 ? cores - 4 : 2))
wait
for name in container_reader container_reader_second plate_reader; do
    tail -n 3 "$OUT/$name.log" 2>/dev/null | sed "s/^/$name: /"
done
tar czf "$OUT/results.tgz" -C "$RESULTS" . && ls -la "$RESULTS"/*
echo "done in $(( $(date +%s) - start )) s"

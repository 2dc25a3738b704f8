#!/usr/bin/env bash
# One lent GPU session for issue 18, in at most 9.5 minutes: the GPU-relevant tests, then the epoch
# benchmarks, figures written to $OUT (the device tool's folder; ./gpu_session_out elsewhere).
#
#   bench/gpu_session.sh                # on the GPU machine (python3 there holds CUDA torch)
#   bench/gpu_session.sh --parallel     # with several GPUs, a second call: step 5 alone
#   bench/gpu_session.sh --cpu-smoke    # every step on this CPU with tiny shapes (checks the script)
#
# Steps (each under its own time limit, so one slow step cannot eat the others' time):
#   1. machine: nvidia-smi, torch, GPUs                               -> session.log
#   2. tests: test_syncs (sync-free step), test_compiled (runtime.compile), test_distributed (gloo)
#                                                                     -> tests.log
#   3. bench_epoch, real-data shape 943 x 2,181 x 49, optimized, hidden 64 and 256, eager
#      (+ host-device syncs per step), then hidden 64 with runtime.compile=step
#   4. bench_epoch, 4,000 x 2,500 x 300, hidden 64, optimized, eager, then compiled; peak memory
#   5. --parallel, with more than one GPU: bench_train, a run on 1 GPU against runtime.devices = all
#      of them (demo 943 stocks x 1,000 days; up to 5 minutes, so a call of its own)
#   6. summary.md: one table of every epoch record (epochs.jsonl)
#
# The GPU machine's image lacks polars (KINDS.md). Before the session, in the repo root here:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl polars==2.1.0 polars-runtime-32==2.1.0
# and run it with carry [".whl"], command `bench/gpu_session.sh`, timeout_s 600. The script
# installs .whl/*.whl into /tmp/site when polars is missing.
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0; PARALLEL_ONLY=0
case "${1:-}" in
    --cpu-smoke) SMOKE=1 ;;
    --parallel) PARALLEL_ONLY=1 ;;
    "") ;;
    *) echo "error: unknown argument ${1} (--cpu-smoke or --parallel)" >&2; exit 2 ;;
esac
OUT=${OUT:-$PWD/gpu_session_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1

PY=${PYTHON:-}
if [[ -z $PY ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "import polars" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
            || { echo "error: installing .whl/*.whl failed"; exit 2; }
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    else
        echo "error: $PY has no polars and there is no .whl/ folder (see this script's header)"; exit 2
    fi
fi

if (( SMOKE )); then
    DEVICE=cpu; GPUS=0
    REAL=(--stocks 20 --days 300 --features 8); BIG=(--stocks 30 --days 300 --features 12)
    BACKEND=eager   # inductor's C++ builds take minutes here: bench_epoch --compile off step measures it alone
    EXTRA=(--extra runtime.num_threads=1)   # a shared 2-core box: two OpenMP threads wait on each other
    HIDDEN_REAL=(8 16); HIDDEN_COMPILED=8; HIDDEN_BIG=8; SYNC_STEPS=2
    TESTS=(tests/test_compiled.py -k "bucket or refused")
    DEMO=(--demo-stocks 30 --demo-days 300 --hidden 8); PARALLEL=2
    LIMIT_TESTS=300; LIMIT_EAGER=300; LIMIT_COMPILED=300; LIMIT_BIG=300; LIMIT_BIG_COMPILED=300; LIMIT_PARALLEL=600
else
    DEVICE=cuda; GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
    (( GPUS > 0 )) || { echo "error: no CUDA device seen by $PY (use --cpu-smoke without a GPU)"; exit 2; }
    REAL=(--stocks 943 --days 2181 --features 49); BIG=(--stocks 4000 --days 2500 --features 300)
    BACKEND=inductor
    EXTRA=()
    HIDDEN_REAL=(64 256); HIDDEN_COMPILED=64; HIDDEN_BIG=64; SYNC_STEPS=8
    TESTS=(tests/test_syncs.py tests/test_compiled.py tests/test_distributed.py)
    DEMO=(--demo-stocks 943 --demo-days 1000 --hidden 64); PARALLEL=$GPUS
    LIMIT_TESTS=80; LIMIT_EAGER=120; LIMIT_COMPILED=150; LIMIT_BIG=90; LIMIT_BIG_COMPILED=110; LIMIT_PARALLEL=150
fi
JSON=$OUT/epochs.jsonl
FAILED=()

step() {  # step NAME SECONDS COMMAND...: run under a time limit, note a failure, go on
    local name=$1 limit=$2; shift 2
    echo; echo "=== $name (limit ${limit} s): $*"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0)) s"
    (( rc == 0 )) || FAILED+=("$name (exit $rc)")
}

EPOCH=("$PY" bench/bench_epoch.py --device "$DEVICE" --mode optimized --json "$JSON" --compile-backend "$BACKEND" "${EXTRA[@]}")  # one JSON record per setting

echo "=== machine: $(date -u +%FT%TZ), smoke=$SMOKE, python $PY"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch, platform; print('torch', torch.__version__, 'python', platform.python_version(), 'gpus', torch.cuda.device_count())"

run_single=$(( SMOKE || ! PARALLEL_ONLY ))
run_parallel=$(( SMOKE || (PARALLEL_ONLY && GPUS > 1) ))
if (( run_single )); then
    step tests "$LIMIT_TESTS" "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" \
        > >(tee "$OUT/tests.log") 2>&1
    # Epoch 1 builds the day graphs (and compiles): the figures are the later epochs'.
    step real-eager "$LIMIT_EAGER" "${EPOCH[@]}" --label real-eager "${REAL[@]}" --hidden "${HIDDEN_REAL[@]}" --epochs 2 \
        --sync-steps "$SYNC_STEPS"
    step real-compiled "$LIMIT_COMPILED" "${EPOCH[@]}" --label real-compiled "${REAL[@]}" --hidden "$HIDDEN_COMPILED" \
        --epochs 3 --compile step
    step big-eager "$LIMIT_BIG" "${EPOCH[@]}" --label big-eager "${BIG[@]}" --hidden "$HIDDEN_BIG" --epochs 2
    step big-compiled "$LIMIT_BIG_COMPILED" "${EPOCH[@]}" --label big-compiled "${BIG[@]}" --hidden "$HIDDEN_BIG" \
        --epochs 3 --compile step
fi
if (( run_parallel )); then
    for devices in 1 "$PARALLEL"; do
        step "devices-$devices" "$LIMIT_PARALLEL" "$PY" bench/bench_train.py --skip-real --modes optimized \
            "${DEMO[@]}" --extra="--runtime.devices=$devices"
    done
elif (( GPUS > 1 )); then
    echo; echo "=== $GPUS GPUs: run bench/gpu_session.sh --parallel next for 1 against $GPUS GPUs"
else
    echo; echo "=== one GPU: the 1 against N GPUs comparison needs a machine with several"
fi

"$PY" - "$JSON" > "$OUT/summary.md" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])] if __import__("os").path.exists(sys.argv[1]) else []
print("| label | panel | hidden | compile | device | epochs (s) | median after the first | stock-days/s | peak GiB | syncs/step | compiles / graphs / breaks |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
def fmt(value, spec):
    return "" if value is None else format(value, spec)
for r in rows:
    counts = r.get("compile_counts") or {}
    cells = [r["label"], f"{r['stocks']} x {r['days']} x {r['features']}", r["hidden"], r["compile"],
             r["gpu"] or r["device"], ", ".join(f"{w:.1f}" for w in r["epoch_seconds"]),
             fmt(r.get("later_epoch_median"), ".1f"), fmt(r["samples_per_second"], ".0f"),
             fmt(r.get("peak_gpu_gib"), ".1f"), fmt(r.get("syncs_per_step"), ".2f"),
             " / ".join(str(counts[k]) for k in ("compiles", "graphs", "graph_breaks")) if counts else ""]
    print("| " + " | ".join(str(c) for c in cells) + " |")
EOF
cat "$OUT/summary.md"
echo
if (( ${#FAILED[@]} )); then echo "=== failed: ${FAILED[*]}"; exit 1; fi
echo "=== all steps done in ${SECONDS} s"

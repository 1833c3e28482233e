#!/usr/bin/env bash
# The GPU suite in one command. On the GPU machine (PyTorch 2.11 + CUDA 13, transformers, no Rust):
#
#   bash gpu-bundle/run_suite.sh            # full: 7B figures + checks (estimated 4-6 min on an H100, not yet run)
#   bash gpu-bundle/run_suite.sh quick      # the checks (parity, a CUDA RL step, NCCL) + benches at the mid shape
#   bash gpu-bundle/run_suite.sh cpu        # everything at the tiny shape on the CPU (no GPU needed)
#
# It finds the machine's libtorch (python3 -c 'import torch' -> torch/lib) and the NVIDIA wheel
# libraries beside it (site-packages/nvidia/*/lib: cuBLAS, cuDNN, NCCL, ...), puts them on
# LD_LIBRARY_PATH with a `libnccl.so` link to the wheel's `libnccl.so.2` (cudarc looks for the
# unversioned name) and the CUDA driver's directory, checks that the binary resolves every
# library, then runs each measurement (omnirl and, beside it, the transformers peer) and writes
# to $OUT (or ./suite-out): results.jsonl (one JSON line per measurement), results.json,
# performance.md (tables, the device name and this command) and suite.log.
#
# Environment: OMNIRL_BIN (default: the omnirl beside this script), PYTHON (python3),
# OMNIRL_TORCH_DIR (skip the torch import), OMNIRL_SUITE_TIMEOUT (seconds per step, 300),
# OMNIRL_SUITE_PEERS=0 (skip the Python peers), OMNIRL_SUITE_ONLY="learner decode" (run only the
# named steps: parity rl_memory nccl learner decode encoders; to split the suite over two calls).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODE="${1:-full}"
case "$MODE" in full|quick|cpu) ;; -h|--help) sed -n '2,22p' "$0"; exit 0 ;; *) echo "run_suite.sh: mode '$MODE' is not full, quick or cpu" >&2; exit 2 ;; esac
OUT="${OUT:-$PWD/suite-out}"
mkdir -p "$OUT"
BIN="${OMNIRL_BIN:-$HERE/omnirl}"
PY="${PYTHON:-python3}"
PEERS="${OMNIRL_SUITE_PEERS:-1}"
STEP_TIMEOUT="${OMNIRL_SUITE_TIMEOUT:-300}"
RESULTS="$OUT/results.jsonl"
LOG="$OUT/suite.log"
: > "$RESULTS"
: > "$LOG"
log() { printf '[suite %s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$LOG" >&2; }

# ------------------------------------------------------------------ libraries
TORCH_DIR="${OMNIRL_TORCH_DIR:-$("$PY" -c 'import torch, os; print(os.path.dirname(torch.__file__))' 2>>"$LOG")}"
if [ -z "$TORCH_DIR" ] || [ ! -d "$TORCH_DIR/lib" ]; then
  log "cannot find libtorch: '$PY -c \"import torch\"' failed and OMNIRL_TORCH_DIR is not set"; exit 1
fi
SITE="$(dirname "$TORCH_DIR")"
LIBS="$TORCH_DIR/lib"
for d in "$SITE"/nvidia/*/lib "$SITE"/nvidia/*/*/lib; do [ -d "$d" ] && LIBS="$LIBS:$d"; done
SHIM="$(mktemp -d)"
NCCL_SO="$(ls "$SITE"/nvidia/nccl/lib/libnccl.so.2 2>/dev/null | head -n1)"
[ -n "$NCCL_SO" ] && ln -sf "$NCCL_SO" "$SHIM/libnccl.so"
CUDA_SO="$(ldconfig -p 2>/dev/null | awk '/libcuda\.so(\.1)? /{print $NF; exit}')"
[ -n "$CUDA_SO" ] && LIBS="$LIBS:$(dirname "$CUDA_SO")"
[ -d /usr/local/nvidia/lib64 ] && LIBS="$LIBS:/usr/local/nvidia/lib64"
export LD_LIBRARY_PATH="$SHIM:$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONUNBUFFERED=1
log "mode $MODE; binary $BIN; libtorch $TORCH_DIR; NCCL ${NCCL_SO:-not found}; CUDA driver ${CUDA_SO:-not found}"
missing="$(ldd "$BIN" 2>&1 | grep 'not found' || true)"
if [ -n "$missing" ]; then
  log "the binary does not resolve every library:"; echo "$missing" | tee -a "$LOG" >&2; exit 1
fi
if [ -f "$HERE/BUILD_INFO" ]; then log "build: $(cat "$HERE/BUILD_INFO")"; fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG" >&2
if [ "$MODE" != cpu ] && ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>>"$LOG"; then
  log "warning: python's torch sees no CUDA device"
fi
PEER_OK=0
if [ "$PEERS" = 1 ] && "$PY" -c 'import torch, transformers' 2>>"$LOG"; then PEER_OK=1; fi

# ------------------------------------------------------------------ steps
# step NAME IMPL CMD...: runs CMD, keeps its JSON lines, records an error line when it gives none.
step() {
  local name="$1" impl="$2"; shift 2
  if [ -n "${OMNIRL_SUITE_ONLY:-}" ] && [[ " $OMNIRL_SUITE_ONLY " != *" $name "* ]]; then return 0; fi
  log "$name ($impl): $*"
  local tmp; tmp="$(mktemp)"
  local t0=$SECONDS
  timeout "$STEP_TIMEOUT" "$@" > "$tmp" 2>> "$LOG"
  local rc=$?
  grep '^{' "$tmp" >> "$RESULTS"
  grep -v '^{' "$tmp" >> "$LOG"
  if ! grep -q '^{' "$tmp"; then
    local why; why="$(tail -n 3 "$LOG" | tr '\n"\\' '  /' | cut -c1-400)"
    printf '{"bench": "%s", "implementation": "%s", "error": "exit %s: %s"}\n' "$name" "$impl" "$rc" "$why" >> "$RESULTS"
  fi
  log "$name ($impl): exit $rc in $((SECONDS - t0)) s"
  rm -f "$tmp"
}
peer() {
  local name="$1"; shift
  if [ -n "${OMNIRL_SUITE_ONLY:-}" ] && [[ " $OMNIRL_SUITE_ONLY " != *" $name "* ]]; then return 0; fi
  if [ "$PEER_OK" = 1 ]; then
    step "$name" transformers "$PY" "$HERE/$1" "${@:2}"
  else
    printf '{"bench": "%s", "implementation": "transformers", "skipped": "%s cannot import torch and transformers (or OMNIRL_SUITE_PEERS=0)"}\n' "$name" "$PY" >> "$RESULTS"
  fi
}

if [ "$MODE" = cpu ]; then
  DEV=(--device cpu)
  step parity omnirl "$BIN" bench parity --shape tiny "${DEV[@]}" --dtype bf16 --json
  step rl_memory omnirl "$BIN" bench rl-memory --shape tiny "${DEV[@]}" --lora --lora-rank 8 --json
  step nccl omnirl "$BIN" bench nccl "${DEV[@]}" --mib 4 --iters 3 --json
  step learner omnirl "$BIN" bench learner --shape tiny "${DEV[@]}" --checkpointing --steps 2 --json
  peer learner peer_learner.py --shape tiny --device cpu --checkpointing --steps 2
  step decode omnirl "$BIN" bench decode --shape tiny "${DEV[@]}" --batch 1,16,64 --reps 2 --json
  peer decode peer_decode.py --shape tiny --device cpu --batch 1,16,64 --reps 2
  step encoders omnirl "$BIN" bench encoders --shape tiny "${DEV[@]}" --json
else
  DEV=(--device cuda)
  step parity omnirl "$BIN" bench parity --shape tiny "${DEV[@]}" --dtype bf16 --json
  step parity omnirl "$BIN" bench parity --shape mid "${DEV[@]}" --dtype bf16 --json
  step rl_memory omnirl "$BIN" bench rl-memory --shape tiny "${DEV[@]}" --lora --lora-rank 8 --json
  step nccl omnirl "$BIN" bench nccl "${DEV[@]}" --json
  if [ "$MODE" = quick ]; then
    step learner omnirl "$BIN" bench learner --shape mid "${DEV[@]}" --checkpointing --steps 2 --json
    peer learner peer_learner.py --shape mid --checkpointing --steps 2
    step decode omnirl "$BIN" bench decode --shape mid "${DEV[@]}" --batch 1,16,64 --reps 2 --json
    peer decode peer_decode.py --shape mid --batch 1,16,64 --reps 2
    step encoders omnirl "$BIN" bench encoders --shape mid "${DEV[@]}" --json
  else
    step learner omnirl "$BIN" bench learner --shape 7b "${DEV[@]}" --dtype bf16 --seq-len 8192 --checkpointing --steps 3 --ceilings --json
    peer learner peer_learner.py --shape 7b --dtype bf16 --seq-len 8192 --checkpointing --steps 3
    step decode omnirl "$BIN" bench decode --shape 7b "${DEV[@]}" --dtype bf16 --batch 1,16,64 --prompt-len 512 --new-tokens 128 --json
    peer decode peer_decode.py --shape 7b --dtype bf16 --batch 1,16,64 --prompt-len 512 --new-tokens 128
    step encoders omnirl "$BIN" bench encoders --shape 7b "${DEV[@]}" --dtype bf16 --json
    step rl_memory omnirl "$BIN" bench rl-memory --shape 7b "${DEV[@]}" --dtype bf16 --lora --lora-rank 64 --rows 4 --json
  fi
fi

# ------------------------------------------------------------------ report
CMD="bash ${OMNIRL_SUITE_NAME:-gpu-bundle/run_suite.sh}${1:+ $1}"
if command -v "$PY" >/dev/null; then
  "$PY" "$HERE/report.py" "$RESULTS" "$OUT" --command "$CMD" --build-info "$HERE/BUILD_INFO" --title "omnirl suite ($MODE)" >/dev/null 2>>"$LOG" \
    || log "report.py failed (see $LOG)"
fi
fails="$(grep -c '"error"' "$RESULTS" || true)"
checks="$(grep -cE '"pass": false|"train_step_ok": false' "$RESULTS" || true)"
log "done: $(wc -l < "$RESULTS") records, $fails errors, $checks failed checks; $OUT/performance.md"
[ -f "$OUT/performance.md" ] && cat "$OUT/performance.md"
[ "$fails" = 0 ] && [ "$checks" = 0 ]

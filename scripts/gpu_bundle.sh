#!/usr/bin/env bash
# Builds the GPU bundle: a release `omnirl` linked against the CUDA build of libtorch 2.11.0
# (libtorch_cuda.so really linked, so CUDA is usable), without FFmpeg (`--no-default-features`:
# media decoding returns an error; the GPU machines have no FFmpeg libraries), stripped, together
# with the suite (scripts/gpu: run_suite.sh, the transformers peers, report.py) in gpu-bundle/,
# which is gitignored and small enough to `carry` to a GPU machine (< 64 MiB with the tree).
#
#   scripts/gpu_bundle.sh               # build, package, check (NEEDED libraries, size)
#   scripts/gpu_bundle.sh --cuda-libs   # first install torch 2.11's NVIDIA runtime wheels into
#                                       # target/gpu/cuda-libs (2.2 GB), so the binary can start here
#   scripts/gpu_bundle.sh --smoke       # then run the bundle's CPU suite here (needs --cuda-libs once)
#
# On the GPU machine (device tool `run`, carry ["gpu-bundle"]):  bash gpu-bundle/run_suite.sh
# The binary carries no libtorch: at run time run_suite.sh puts the machine's own torch/lib (from
# `python3 -c 'import torch'`), its site-packages/nvidia/*/lib (cuBLAS, cuDNN, NCCL, ...), a
# libnccl.so link for cudarc and the CUDA driver's directory on LD_LIBRARY_PATH; see
# docs/performance.md. Builds in target/gpu (CARGO_TARGET_DIR) so the normal target is untouched.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SMOKE=0
CUDA_LIBS_INSTALL=0
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    --cuda-libs) CUDA_LIBS_INSTALL=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu_bundle.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done
log() { printf '[gpu-bundle] %s\n' "$*"; }

[ -f .omnirl.env ] || { echo "gpu_bundle.sh: run scripts/setup.sh first (.omnirl.env is missing)" >&2; exit 1; }
# shellcheck disable=SC1091
source .omnirl.env
TARGET="$ROOT/target/gpu"
BUNDLE="$ROOT/gpu-bundle"
CUDA_LIBS="$TARGET/cuda-libs"
if [ ! -f "$LIBTORCH/lib/libtorch_cuda.so" ]; then
  echo "gpu_bundle.sh: $LIBTORCH/lib has no libtorch_cuda.so; the torch 2.11.0 wheel from PyPI has it" >&2
  exit 1
fi
TORCH_VERSION="$(sed -n 's/^Version: //p' "$LIBTORCH"-*.dist-info/METADATA 2>/dev/null | head -n1)"
[ "${TORCH_VERSION:-}" = "2.11.0" ] || log "warning: libtorch is '${TORCH_VERSION:-unknown}', the GPU machines run 2.11.0"

if [ "$CUDA_LIBS_INSTALL" = 1 ]; then
  # Exactly the NVIDIA wheels torch 2.11.0 names (its METADATA), outside .venv so nothing else changes.
  log "installing the CUDA runtime wheels of torch 2.11.0 into $CUDA_LIBS"
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check --target "$CUDA_LIBS" \
    "cuda-toolkit[cublas,cufft,cufile,curand,cusparse,nvjitlink]==13.0.2" nvidia-cudnn-cu13==9.19.0.56 \
    nvidia-cusparselt-cu13==0.8.0 nvidia-nccl-cu13==2.28.9 nvidia-nvshmem-cu13==3.4.5 2>&1 \
    | grep -v "dependency resolver\|requires .*which is not installed" || true
fi

# ------------------------------------------------------------------ build
# libtorch_cuda.so's own dependencies (cuBLAS, cuDNN, ...) are not needed to link: the build
# machine may lack them, so the linker is told not to resolve the shared libraries' undefined
# symbols (the binary's own symbols are still checked). build.rs forces -ltorch_cuda past
# --as-needed (the `cuda` feature).
log "building omnirl (release, --no-default-features --features cuda) in $TARGET"
CARGO_TARGET_DIR="$TARGET" cargo rustc --release -p trainer --bin omnirl --no-default-features --features cuda \
  -- -C link-arg=-Wl,--allow-shlib-undefined
BIN="$TARGET/release/omnirl"

# ------------------------------------------------------------------ checks
NEEDED="$(readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
log "NEEDED: $(echo $NEEDED)"
echo "$NEEDED" | grep -qx 'libtorch_cuda.so' || { echo "gpu_bundle.sh: libtorch_cuda.so is not NEEDED (CUDA would be unavailable)" >&2; exit 1; }
bad="$(echo "$NEEDED" | grep -E '^lib(av|sw|postproc|mpi|open-|hwloc|ffi)' || true)"
[ -z "$bad" ] || { echo "gpu_bundle.sh: the GPU machine lacks these libraries: $bad" >&2; exit 1; }
unknown="$(echo "$NEEDED" | grep -vE '^(libtorch|libtorch_cpu|libtorch_cuda|libc10|libc10_cuda|libstdc\+\+|libgcc_s|libm|libc|libdl|librt|libpthread|libgomp|ld-linux-x86-64)\.so' || true)"
[ -z "$unknown" ] || log "warning: libraries the GPU machine may lack: $(echo $unknown)"

# ------------------------------------------------------------------ package
rm -rf "$BUNDLE.tmp"
mkdir -p "$BUNDLE.tmp"
strip --strip-all -o "$BUNDLE.tmp/omnirl" "$BIN"
for f in run_suite.sh peer_common.py peer_learner.py peer_decode.py report.py; do
  cp "$ROOT/scripts/gpu/$f" "$BUNDLE.tmp/$f"
done
chmod +x "$BUNDLE.tmp/omnirl" "$BUNDLE.tmp/run_suite.sh"
REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD 2>/dev/null || REV="$REV+dirty"
printf 'omnirl %s, built %s, %s, libtorch %s (cuda linked), features: cuda, no ffmpeg\n' \
  "$REV" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(rustc --version)" "${TORCH_VERSION:-unknown}" > "$BUNDLE.tmp/BUILD_INFO"
rm -rf "$BUNDLE"
mv "$BUNDLE.tmp" "$BUNDLE"
SIZE="$(du -sb "$BUNDLE" | cut -f1)"
log "bundle: $BUNDLE ($((SIZE / 1048576)) MiB): $(ls "$BUNDLE" | tr '\n' ' ')"
if [ "$SIZE" -ge $((56 * 1048576)) ]; then
  echo "gpu_bundle.sh: the bundle is $((SIZE / 1048576)) MiB; with the repository it must stay under 64 MiB" >&2
  exit 1
fi

# ------------------------------------------------------------------ smoke test here
if [ "$SMOKE" = 1 ]; then
  [ -d "$CUDA_LIBS/nvidia" ] || { echo "gpu_bundle.sh: --smoke needs the CUDA runtime wheels: run with --cuda-libs once" >&2; exit 1; }
  EXTRA=""
  for d in "$CUDA_LIBS"/nvidia/*/lib; do EXTRA="$EXTRA:$d"; done
  log "smoke: the bundle's CPU suite (OUT=$TARGET/smoke)"
  OUT="$TARGET/smoke" OMNIRL_TORCH_DIR="$LIBTORCH" OMNIRL_SUITE_NAME="gpu-bundle/run_suite.sh" \
    LD_LIBRARY_PATH="${EXTRA#:}:$LD_LIBRARY_PATH" PYTHON="${OMNIRL_PEER_PYTHON:-python3}" \
    bash "$BUNDLE/run_suite.sh" cpu
fi
log "done. On a GPU machine: device run with carry [\"gpu-bundle\"]: bash gpu-bundle/run_suite.sh"

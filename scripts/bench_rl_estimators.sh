#!/usr/bin/env bash
# TAURA against plain GRPO on the quickstart, from one shared SFT checkpoint: trains the
# quickstart's SFT stage once, then runs its RL stage (and the held-out evaluation after it) with
# each estimator and each seed, and prints the held-out mean reward after RL as mean ± std over
# the seeds, per estimator and per question type, next to the SFT checkpoint's own figure.
#
#   scripts/bench_rl_estimators.sh [OUT_DIR] [-- --set KEY=VALUE ...]
#
# OUT_DIR defaults to runs/bench_rl_estimators; SEEDS (default "1 2 3") and ESTIMATORS (default
# "taura grpo") pick the grid; SFT_FROM=RUN_DIR (e.g. runs/quickstart) starts every run from that
# finished quickstart run's SFT stage instead of training one. Extra --set arguments go to every
# run (for example `-- --set stages.rl.schedule.max_steps=160` for the 4x-longer stability run:
# `max_steps` decides the length, the data cursor wraps around the 294 RL prompts). Re-running skips
# finished runs. Each RL run is `omnirl train recipes/quickstart.yaml --resume DIR` on a copy of
# the shared SFT stage, so only `seed` and `algorithm.estimator` differ between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bench_rl_estimators}
shift || true
[ "${1:-}" = "--" ] && shift
extra=("$@")
seeds=${SEEDS:-1 2 3}
estimators=${ESTIMATORS:-taura grpo}
# shellcheck disable=SC1091
source .omnirl.env
bin=./target/release/omnirl
[ -x "$bin" ] || cargo build --release -p trainer --bin omnirl
python3 scripts/make_quickstart_data.py --out data/quickstart

base=${SFT_FROM:-$out/sft/quickstart}
if [ ! -f "$base/sft/final/config.json" ]; then
  [ -n "${SFT_FROM:-}" ] && { echo "SFT_FROM=$SFT_FROM has no finished sft stage" >&2; exit 1; }
  echo "== SFT (shared by every run)"
  rm -rf "$out/sft"
  # One RL step and no validation: only the SFT stage and its figures are kept.
  "$bin" train recipes/quickstart.yaml --set "output_dir=$out/sft" \
    --set stages.rl.schedule.max_steps=1 --set 'stages.rl.data.val_files=[]' "${extra[@]}"
fi

# Seeds outside, estimators inside: an interrupted grid still compares both on the same seeds.
for seed in $seeds; do
  for est in $estimators; do
    dir=$out/$est-seed$seed/quickstart
    [ -f "$dir/rl/final/config.json" ] && [ -f "$dir/summary.json" ] && continue
    echo "== $est, seed $seed"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp -r "$base/init" "$base/sft" "$dir/"
    # The run's recipe.yaml is this run's resolved recipe (JSON is YAML), so --resume accepts the
    # shared SFT stage under this seed and estimator.
    "$bin" validate recipes/quickstart.yaml --set "algorithm.estimator=$est" --set "seed=$seed" "${extra[@]}" \
      --json | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["recipe"], indent=1))' \
      > "$dir/recipe.yaml"
    # Keep the figures measured before and after SFT; the run adds the after-RL ones.
    python3 - "$base/summary.json" "$dir/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["figures"] = {k: v for k, v in s["figures"].items() if k in ("before_sft", "after_sft")}
s["complete"] = False
json.dump(s, open(sys.argv[2], "w"), indent=2)
PY
    start=$(date +%s)
    "$bin" train recipes/quickstart.yaml --set "algorithm.estimator=$est" --set "seed=$seed" \
      "${extra[@]}" --resume "$dir" > "$dir.log" 2>&1 || { tail -20 "$dir.log"; exit 1; }
    echo "   $(( $(date +%s) - start )) s; $(grep 'after_rl:' "$dir.log" | sed 's/^omnirl train: //')"
  done
done

python3 - "$out" "$base/summary.json" $estimators -- $seeds <<'PY'
import json, statistics, sys
out, base, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
cut = rest.index("--")
estimators, seeds = rest[:cut], rest[cut + 1:]
types = ["all", "MCQ", "NUM", "SIZE", "TR"]
sft = json.load(open(base))["figures"]["after_sft"]
print(f"\nheld-out mean reward after RL, mean ± std over seeds {' '.join(seeds)} (greedy evaluation)")
print(f"{'':14}" + "".join(f"{t:>16}" for t in types))
print(f"{'after SFT':14}" + "".join(f"{sft[t]['mean_reward']:>16.3f}" for t in types if t in sft))
for est in estimators:
    runs = [json.load(open(f"{out}/{est}-seed{s}/quickstart/summary.json"))["figures"]["after_rl"] for s in seeds]
    print(f"{est:14}" + "".join(f"{r['all']['mean_reward']:>16.3f}" for r in runs) + "   (all, per seed)")
    cells = []
    for t in types:
        v = [r[t]["mean_reward"] for r in runs if t in r]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        cells.append(f"{statistics.mean(v):.3f} ± {sd:.3f}")
    print(f"{est:14}" + "".join(f"{c:>16}" for c in cells))

# The RL stage's curves: means over the first and last quarter of the steps.
keys = [("reward/mean", "train reward"), ("errors/any_rate", "invalid-output rate"), ("actor/entropy", "entropy")]
print("\nRL curves, first quarter -> last quarter of the steps")
for est in estimators:
    for seed in seeds:
        rows = [json.loads(l) for l in open(f"{out}/{est}-seed{seed}/quickstart/rl/metrics.jsonl")]
        rows = [r for r in rows if "reward/mean" in r]
        q = max(1, len(rows) // 4)
        mean = lambda k, part: statistics.mean(r.get(k, 0.0) for r in part)
        cells = [f"{name} {mean(k, rows[:q]):.3f} -> {mean(k, rows[-q:]):.3f}" for k, name in keys]
        print(f"{est} seed {seed} ({len(rows)} steps): " + "; ".join(cells))
PY

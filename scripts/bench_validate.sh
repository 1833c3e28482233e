#!/usr/bin/env bash
# Benchmark: `omnirl validate` on a 100,000-line RL dataset (goal: under 10 s on 2 cores),
# beside a named peer measured in the same run: a plain-Python check of the same file
# (json.loads per line, the reference's field and answer rules, os.path.exists per video),
# i.e. what a Python framework does at best before its first step.
#
#   scripts/bench_validate.sh [LINES]        (default 100000; needs `make release` first)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source .omnirl.env
LINES="${1:-100000}"
BIN="$ROOT/target/release/omnirl"
[ -x "$BIN" ] || cargo build --release -q -p trainer --bin omnirl
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK" "$LINES" <<'PY'
import json, os, random, sys
work, n = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{work}/videos", exist_ok=True)
src = "data/quickstart/videos/scene_00.mp4"
for i in range(2000):
    os.link(src, f"{work}/videos/v{i:04d}.mp4")
rng = random.Random(0)
with open(f"{work}/train.jsonl", "w") as f:
    for i in range(n):
        kind = rng.choice(["MCQ_Bench", "TR_Bench", "SIZE_Bench", "NUM_Bench"])
        answer = {"MCQ_Bench": "B", "TR_Bench": "[[1.5, 4.0], [7.0, 9.25]]"}.get(kind, "12.5")
        options = ["A. red", "B. green", "C. blue", "D. white"] if kind.startswith("MCQ") else []
        f.write(json.dumps({"prompt": [{"content": "", "role": "user"}], "question_type": kind,
            "question": f"Question {i} about the video?", "answer": answer, "options": options,
            "video": f"videos/v{rng.randrange(2000):04d}.mp4", "fps": 30.0, "duration_seconds": 95.5,
            "has_audio": True, "data_source": "bench", "ability": "agent",
            "extra_info": {"traj_id": f"t{i}", "error_reason": "INVALID_JSON"}}) + "\n")
PY
cat > "$WORK/recipe.yaml" <<YAML
name: bench
stages:
  - kind: rl
    model: {init: random, config: $ROOT/data/quickstart/tiny_thinker.json}
    data: {train_files: [$WORK/train.jsonl], media_root: $WORK}
    rollout: {prompts_per_step: 32, group_size: 8}
YAML

cat > "$WORK/peer.py" <<'PY'
import json, os, re, sys
path, root = sys.argv[1], sys.argv[2]
num = re.compile(r"[+-]?\d+(?:\.\d+)?")
errors, seen = 0, {}
with open(path) as f:
    for line_no, line in enumerate(f, 1):
        row = json.loads(line)
        qt = row["question_type"].split("_", 1)[0].upper()
        for k in ("video", "question", "answer", "fps", "duration_seconds", "has_audio"):
            if k not in row: errors += 1
        if qt == "MCQ":
            errors += row["answer"].strip().upper()[:1] not in [o[0] for o in row["options"]]
        elif qt == "TR":
            spans = json.loads(row["answer"])
            errors += any(s > e for s, e in spans)
        elif qt in ("NUM", "SIZE"):
            errors += num.search(row["answer"]) is None
        v = row["video"]
        if v not in seen:
            seen[v] = os.path.exists(os.path.join(root, v))
print(errors, sum(not x for x in seen.values()))
PY

t0=$(date +%s.%N)
"$BIN" validate "$WORK/recipe.yaml" > "$WORK/out.txt" 2> "$WORK/err.txt" || { cat "$WORK/err.txt"; exit 1; }
t1=$(date +%s.%N)
python3 "$WORK/peer.py" "$WORK/train.jsonl" "$WORK" > /dev/null
t2=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" "$LINES" <<'PY'
import sys
t0, t1, t2, n = map(float, sys.argv[1:5])
ours, peer = t1 - t0, t2 - t1
print(f"validate {int(n)} RL lines: omnirl {ours:.2f} s ({n/ours:,.0f} lines/s), "
      f"python peer {peer:.2f} s ({n/peer:,.0f} lines/s); ratio peer/omnirl = {peer/ours:.1f}x; "
      f"goal < 10 s: {'met' if ours < 10 else 'MISSED'}")
PY
tail -1 "$WORK/err.txt"

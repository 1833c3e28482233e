#!/usr/bin/env bash
# Throughput of `omnirl score` on 1,000,000 JSONL lines (MCQ/TR/NUM/SIZE, no FF), against a
# plain-python3 implementation of the reference scoring semantics (video_env.py: json.loads,
# _spans_to_ndarray/overlap_ratio without numpy, the number regex, round(x, 2), and MRA in
# float32 emulated with struct) run on the same file in the same run.
#
# Usage: scripts/bench_score.sh [LINES]        (default 1000000)
# Env:   BENCH_DIR (default: a fresh temp dir), KEEP=1 keeps it.
set -euo pipefail

LINES="${1:-1000000}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
[ -f .omnirl.env ] && source .omnirl.env

BENCH_DIR="${BENCH_DIR:-$(mktemp -d -t omnirl-bench-score.XXXXXX)}"
mkdir -p "$BENCH_DIR"
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$BENCH_DIR"' EXIT; fi

echo "== building omnirl (release)" >&2
cargo build --release -p trainer --bin omnirl >&2
OMNIRL="$ROOT/target/release/omnirl"

DATA="$BENCH_DIR/preds.jsonl"
echo "== generating $LINES lines into $DATA" >&2
python3 - "$LINES" "$DATA" <<'PY'
import json, random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(1234)
letters = "ABCD"
with open(path, "w") as f:
    for i in range(n):
        r = rng.random()
        base = {"video": f"videos/bench/{i % 5000:05d}.mp4", "question": "What happens in the clip around the marked moment?",
                "data_source": "agent", "extra_info": {"index": i, "split": "test"}}
        if r < 0.35:
            gt = rng.choice(letters)
            pred = gt if rng.random() < 0.6 else rng.choice(letters + "E ")
            rec = {"question_type": "MCQ_LongVR-Short", "options": [f"{c}. option {c}" for c in letters], "answer": gt, "prediction": pred}
        elif r < 0.65:
            k = rng.randint(1, 3)
            gt, t = [], 0.0
            for _ in range(k):
                s = round(t + rng.uniform(0, 60), 1); e = round(s + rng.uniform(1, 40), 1); gt.append([s, e]); t = e
            if rng.random() < 0.03:
                pred = "[[12.5, oops]]"                      # ANSWER_JSON_PARSE
            else:
                pred = json.dumps([[round(s + rng.uniform(-5, 5), 2), round(e + rng.uniform(-5, 5), 2)] for s, e in gt])
            rec = {"question_type": "TR_LongVALE-Short", "options": None, "answer": json.dumps(gt), "prediction": pred}
        elif r < 0.80:
            gt = rng.randint(0, 40)
            pred = f"{gt + rng.choice([0, 0, 0, 1, -1])}" if rng.random() < 0.97 else "many"
            rec = {"question_type": "NUM", "options": [], "answer": str(gt), "prediction": pred}
        else:
            gt = round(rng.uniform(0.5, 80), 1)
            pred = f"{round(gt * rng.uniform(0.4, 1.6), 2)}"
            rec = {"question_type": "SIZE_VSI", "options": [], "answer": str(gt), "prediction": pred}
        base.update(rec)
        f.write(json.dumps(base) + "\n")
PY
BYTES=$(wc -c <"$DATA")
echo "   $(numfmt --to=iec "$BYTES" 2>/dev/null || echo "$BYTES bytes")" >&2

PEER="$BENCH_DIR/reference_score.py"
cat >"$PEER" <<'PY'
# The reference's scoring semantics (video_env.py answer branch) in plain python3, reading and
# writing JSONL like `omnirl score`. numpy/torch are replaced by equivalent pure-Python code;
# float32 in mean_relative_accuracy is emulated with struct.
import json, re, struct, sys
from collections import defaultdict

NUM_RE = re.compile(r'[+-]?\d+(?:\.\d+)?')
_F = struct.Struct('f')
def f32(x):
    return _F.unpack(_F.pack(x))[0]
THS = [f32(0.5 + 0.05 * i) for i in range(10)]        # torch.arange(0.5, 0.975, 0.05, float32)
ONE_MINUS = [f32(1 - t) for t in THS]
EPS32 = f32(1e-8)

class Err(Exception):
    def __init__(self, code): self.code = code

def spans(v):
    if v is None: return []
    if isinstance(v, (list, tuple)):
        if len(v) == 0: return []
        if isinstance(v[0], (list, tuple)):
            a = [[float(x), float(y)] for x, y in v]
        elif len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
            a = [[float(v[0]), float(v[1])]]
        else:
            raise ValueError("Invalid span format")
        for s, e in a:
            if s != s or e != e or s in (float("inf"), float("-inf")) or e in (float("inf"), float("-inf")):
                raise ValueError("span contains NaN or Inf")
        return a
    raise ValueError("Invalid span format")

def merge(a):
    if not a: return a
    a = sorted(a, key=lambda x: x[0])
    m = [list(a[0])]
    for s, e in a[1:]:
        if s <= m[-1][1]: m[-1][1] = max(m[-1][1], e)
        else: m.append([s, e])
    return m

def overlap_ratio(p, g):
    if not p and not g: return 1.0
    if not p or not g: return 0.0
    p, g = merge(p), merge(g)
    inter = 0.0
    for s1, e1 in p:
        for s2, e2 in g:
            inter += max(0, min(e1, e2) - max(s1, s2))
    lp = sum(e - s for s, e in p); lg = sum(e - s for s, e in g)
    return float(inter / (lp + lg - inter + 1e-12))

def mra(pred, target):
    p, t = f32(pred), f32(target)
    rel = f32(f32(abs(p - t)) / f32(abs(t) + EPS32))
    return sum(1 for b in ONE_MINUS if rel < b) / 10

def score(qt, content, answer):
    qt = qt.split("_", 1)[0].upper()
    if qt == "MCQ":
        if not answer: return 0.0
        return 1.0 if content.strip().upper() == answer[0].strip().upper() else 0.0
    if qt == "TR":
        try: pred = json.loads(content)
        except Exception: raise Err("ANSWER_JSON_PARSE")
        gt = answer
        if isinstance(gt, str):
            try: gt = json.loads(gt)
            except Exception: pass
        if not isinstance(gt, (list, tuple)): raise Err("GT_JSON_PARSE")
        try: p, g = spans(pred), spans(gt)
        except Exception: raise Err("SPAN_FORMAT")
        if any(s > e for s, e in p): return 0.0
        return overlap_ratio(p, g)
    if qt in ("NUM", "SIZE"):
        gs = answer[0] if isinstance(answer, list) else answer
        try: gv = float(NUM_RE.findall(str(gs))[0])
        except Exception: raise Err("GT_JSON_PARSE")
        try: pv = float(NUM_RE.findall(content)[0])
        except Exception: raise Err("ANSWER_NOT_STRING")
        if qt == "NUM": return 1.0 if round(gv, 2) == round(pv, 2) else 0.0
        return mra(pv, gv)
    if qt == "FF": return 0.0
    raise Err("UNKNOWN_QTYPE")

def main(path):
    n = invalid = 0
    sums = defaultdict(lambda: [0, 0.0])
    out = sys.stdout
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                rec = json.loads(line)
                reward, error = score(rec["question_type"], rec["prediction"], rec["answer"]), None
            except Err as e:
                reward, error = None, e.code
            except Exception:
                out.write(json.dumps({"line": n, "reward": None, "error": "INVALID_INPUT_LINE"}) + "\n")
                invalid += 1
                continue
            rec["reward"], rec["error"] = reward, error
            out.write(json.dumps(rec) + "\n")
            if error: invalid += 1
            else:
                s = sums[rec["question_type"].split("_", 1)[0].upper()]; s[0] += 1; s[1] += reward
    print(f"python reference: {n} lines, {invalid} invalid, " +
          ", ".join(f"{k} {v[1] / v[0]:.4f}" for k, v in sorted(sums.items())), file=sys.stderr)

main(sys.argv[1])
PY

cat "$DATA" >/dev/null   # warm the page cache for both runs

now() { date +%s.%N; }
run_timed() { # label, output file, command...
  local label=$1 out=$2; shift 2
  local t0 t1
  t0=$(now); "$@" >"$out" 2>"$out.err"; t1=$(now)
  python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$t0" "$t1"
}

echo "== omnirl score (rayon, $(nproc) cores)" >&2
T_RUST=$(run_timed rust "$BENCH_DIR/rust.jsonl" "$OMNIRL" score --input "$DATA")
tail -n 8 "$BENCH_DIR/rust.jsonl.err" >&2
echo "== omnirl score (RAYON_NUM_THREADS=1)" >&2
T_RUST1=$(run_timed rust1 "$BENCH_DIR/rust1.jsonl" env RAYON_NUM_THREADS=1 "$OMNIRL" score --input "$DATA")
echo "== python3 reference semantics ($(python3 --version 2>&1))" >&2
T_PY=$(run_timed py "$BENCH_DIR/py.jsonl" python3 "$PEER" "$DATA")
cat "$BENCH_DIR/py.jsonl.err" >&2

# Not timed: how often the two agree on (reward, error).
AGREE=$(python3 - "$BENCH_DIR/rust.jsonl" "$BENCH_DIR/py.jsonl" <<'PY'
import json, sys
same = total = 0
with open(sys.argv[1]) as a, open(sys.argv[2]) as b:
    for la, lb in zip(a, b):
        ra, rb = json.loads(la), json.loads(lb)
        total += 1
        ok = ra["error"] == rb["error"] and (ra["reward"] is None) == (rb["reward"] is None) and \
             (ra["reward"] is None or abs(ra["reward"] - rb["reward"]) < 1e-9)
        same += ok
print(f"{same}/{total} lines agree on (reward, error) within 1e-9")
PY
)

python3 - "$LINES" "$BYTES" "$T_RUST" "$T_RUST1" "$T_PY" "$AGREE" <<'PY'
import sys
n, nbytes = int(sys.argv[1]), int(sys.argv[2])
tr, tr1, tp = map(float, sys.argv[3:6])
print(f"lines: {n}  input: {nbytes / 1e6:.1f} MB")
print(f"omnirl score (all cores):   {tr:8.3f} s  {n / tr:12,.0f} lines/s  {nbytes / tr / 1e6:7.1f} MB/s")
print(f"omnirl score (1 thread):    {tr1:8.3f} s  {n / tr1:12,.0f} lines/s")
print(f"python3 reference peer:     {tp:8.3f} s  {n / tp:12,.0f} lines/s")
print(f"ratio omnirl/python: {tp / tr:.1f}x (all cores), {tp / tr1:.1f}x (1 thread)")
print(f"agreement: {sys.argv[6]}")
PY

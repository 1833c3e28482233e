#!/usr/bin/env bash
# Benchmark: the media environment (`omnirl media`, in-process ffmpeg-next, straight to model
# inputs) against the reference's method (docs/reference.md#environment: one `ffmpeg` process
# per frame writing a JPEG, a WAV for audio, a libx264 re-encode for clips; extraction only,
# nothing decoded for the model), same machine, same run.
#
#   scripts/bench_media.sh [RUNS]      (default 3; best of RUNS per action; needs ffmpeg)
#
# Videos (cached in ${OMNIRL_BENCH_CACHE:-/tmp/omnirl-bench-media}): one minute of 1280x720
# 25 fps H.264 (x264 preset veryfast, default key-frame interval 250) with 48 kHz stereo AAC,
# then 10- and 60-minute videos made by stream-copying it end to end (same GOP structure,
# seconds to make). Actions on the 10-minute video: get_frames(0, 600, 8), get_audio(300, 330),
# get_clip(300, 330). Length check: the same requests on the 1- and 60-minute videos.
#
# Ours is timed two ways: `ms` (from the opened video to model-ready inputs, as the
# environment pays it per action; the file is opened once per episode) and the whole process
# (start, open, probe, action, exit). The reference is the whole process, as it runs.
# Model-ready pixel rows are bytes (rollout::media::pixels): a GPU model uploads those and
# normalises on the device; what a CPU model spends expanding them to float32 is printed on
# its own, outside the ratios.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source .omnirl.env
RUNS="${1:-3}"
BIN="$ROOT/target/release/omnirl"
[ -x "$BIN" ] || cargo build --release -q -p trainer --bin omnirl
CACHE="${OMNIRL_BENCH_CACHE:-/tmp/omnirl-bench-media}"
mkdir -p "$CACHE"
ff() { ffmpeg -nostdin -y -loglevel error "$@"; }
if [ ! -s "$CACHE/v1.mp4" ]; then
  echo "making the 1-minute 720p source (x264 veryfast, keyint 250, AAC)..." >&2
  ff -f lavfi -i "testsrc2=s=1280x720:r=25:d=60" -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=60" \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -b:a 128k -ac 2 "$CACHE/v1.mp4"
fi
for m in 10 60; do
  if [ ! -s "$CACHE/v$m.mp4" ]; then
    ff -stream_loop $((m - 1)) -i "$CACHE/v1.mp4" -c copy "$CACHE/v$m.mp4"
  fi
done
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

python3 - "$BIN" "$CACHE" "$WORK" "$RUNS" <<'PY'
import json, subprocess, sys, time
binary, cache, work, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def probe_duration(v):
    out = subprocess.run([binary, "media", "probe", v], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["info"]["duration_s"]

def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args], check=True)

def reference(action, v, d, s, e, n=8):
    """The reference's extraction, command lines of docs/reference.md#environment (clamps included)."""
    if action == "frames":
        step = (e - s) / (n - 1)
        for i in range(n):
            t = e if i == n - 1 else s + i * step
            t = min(max(t, 0.0), d - 0.2)
            ffmpeg("-threads", "8", "-ss", f"{t}", "-i", v, "-frames:v", "1", "-q:v", "2", f"{work}/frame_{t:.3f}.jpg")
    else:
        e = max(min(e, d - 0.2), s)
        L = e - s
        if action == "audio":
            ffmpeg("-ss", f"{s}", "-i", v, "-ss", "0", "-t", f"{L}", "-map", "0:a:0?", "-vn", "-ac", "1", "-ar", "16000",
                   "-c:a", "pcm_s16le", f"{work}/audio.wav")
        else:
            ffmpeg("-ss", f"{s}", "-i", v, "-ss", "0", "-t", f"{L}", "-map", "0:v:0?", "-map", "0:a:0?", "-c:v", "libx264",
                   "-pix_fmt", "yuv420p", "-preset", "superfast", "-crf", "20", "-movflags", "+faststart", "-c:a", "aac",
                   "-b:a", "128k", "-ar", "48000", f"{work}/clip.mp4")

def ours(action, v, d, s, e, n=8):
    args = [binary, "media", action, v, "--start", f"{s}", "--end", f"{e}", "--duration", f"{d}"]
    if action == "frames":
        args += ["--num", f"{n}"]
    t0 = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True)
    wall = (time.perf_counter() - t0) * 1000
    if out.returncode != 0:
        sys.exit(f"omnirl failed: {out.stderr}")
    r = json.loads(out.stdout)
    return r["ms"], wall, r

def best(f):
    vals = [f() for _ in range(runs)]
    return min(vals, key=lambda x: x[0] if isinstance(x, tuple) else x)

def timed(f):
    t0 = time.perf_counter()
    f()
    return (time.perf_counter() - t0) * 1000

v10 = f"{cache}/v10.mp4"
d10 = probe_duration(v10)
actions = [("frames", 0.0, d10, "get_frames 8 frames over [0, 600]"),
           ("audio", 300.0, 330.0, "get_audio 30 s [300, 330]"),
           ("clip", 300.0, 330.0, "get_clip 30 s [300, 330]")]
print(f"10-minute 1280x720 H.264/AAC video ({d10:.1f} s), best of {runs}:")
print(f"{'action':34} {'reference':>10} {'ours (action)':>14} {'ours (process)':>15} {'ratio':>7} {'ratio (process)':>16}")
for action, s, e, label in actions:
    ref = min(timed(lambda: reference(action, v10, d10, s, e)) for _ in range(runs))
    ms, wall, r = best(lambda: ours(action, v10, d10, s, e))
    extra = f"  [{r.get('count')} items, {r.get('gops_decoded', '-')} GOPs]"
    print(f"{label:34} {ref:8.0f}ms {ms:12.0f}ms {wall:13.0f}ms {ref / ms:6.1f}x {ref / wall:15.1f}x{extra}")

print("\nmodel side on a CPU (not in the ratios): expanding the pixel rows (bytes) to float32, best of runs:")
for action, s, e, label in actions:
    if action != "audio":
        x = min(json.loads(subprocess.run([binary, "media", action, v10, "--start", f"{s}", "--end", f"{e}", "--expand"],
                                          capture_output=True, text=True, check=True).stdout)["expand_ms"] for _ in range(runs))
        print(f"{label:34} {x:8.0f}ms")

print("\nlength independence (same requests; ours, action ms, best of runs):")
print(f"{'request':34} {'1-minute':>10} {'60-minute':>10} {'60/1':>6}")
d1, d60 = probe_duration(f"{cache}/v1.mp4"), probe_duration(f"{cache}/v60.mp4")
for action, s, e, label in [("frames", 0.0, 59.0, "get_frames 8 over [0, 59]"), ("audio", 20.0, 50.0, "get_audio [20, 50]"),
                            ("clip", 20.0, 50.0, "get_clip [20, 50]"), ("frames", 10.0, 12.0, "get_frames 8 over [10, 12]")]:
    a = best(lambda: ours(action, f"{cache}/v1.mp4", d1, s, e))[0]
    b = best(lambda: ours(action, f"{cache}/v60.mp4", d60, s, e))[0]
    print(f"{label:34} {a:8.0f}ms {b:8.0f}ms {b / a:5.2f}x")
PY

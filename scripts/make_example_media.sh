#!/usr/bin/env bash
# Generates the small media files that data/examples/*.jsonl refer to (tiny coloured test
# patterns with tones). Idempotent: existing files are kept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../data/examples"
mkdir -p videos media
ff() { ffmpeg -nostdin -y -loglevel error "$@"; }
video() { # name seconds fps audio(1/0)
  [ -f "videos/$1" ] && return 0
  local a=()
  [ "$4" = 1 ] && a=(-f lavfi -i "sine=frequency=440:sample_rate=16000:duration=$2" -c:a aac -b:a 32k -ac 1)
  ff -f lavfi -i "testsrc2=s=64x48:r=$3:d=$2" "${a[@]}" -c:v libx264 -pix_fmt yuv420p -preset veryfast -crf 30 "videos/$1"
}
video kitchen_timer.mp4 24 25 1
video street_crossing.mp4 30 30 0
video piano_lesson.mp4 20 24 1
for t in 0.000 8.000 16.000 24.000; do
  f="media/STEP_1_frame_$t.jpg"
  [ -f "$f" ] && continue
  # The last timestamp is the video's end: seek from the end, as the reference's fallback does.
  if [ "$t" = 24.000 ]; then ff -sseof -0.5 -i videos/kitchen_timer.mp4 -frames:v 1 -q:v 5 "$f"
  else ff -ss "$t" -i videos/kitchen_timer.mp4 -frames:v 1 -q:v 5 "$f"; fi
done
[ -f media/STEP_2_audio_8.000_16.000.wav ] || ff -ss 8 -i videos/kitchen_timer.mp4 -t 8 -vn -ac 1 -ar 16000 -c:a pcm_s16le media/STEP_2_audio_8.000_16.000.wav
[ -f media/STEP_3_clip_11.000_15.000.mp4 ] || ff -ss 11 -i videos/kitchen_timer.mp4 -t 4 -c:v libx264 -preset veryfast -crf 30 -c:a aac media/STEP_3_clip_11.000_15.000.mp4
echo "example media in data/examples/{videos,media}"

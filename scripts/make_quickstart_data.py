#!/usr/bin/env python3
"""Generates the quickstart's tiny dataset: coloured-scene videos (some with tones, some
silent) and questions of every type whose answers need looking or listening at the right
moment, in the three reference formats (RL, eval, SFT).

    python3 scripts/make_quickstart_data.py [--out data/quickstart] [--force]

Deterministic (seeded). Needs only the ffmpeg CLI. Skips work whose outputs exist unless
--force. The SFT file holds two-turn expert trajectories (look, then answer) whose frames
are extracted to PNG files so every media path in it exists.
"""
import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

COLOURS = {
    "red": "0xE02020", "green": "0x20C040", "blue": "0x2040E0",
    "yellow": "0xE0D020", "white": "0xF0F0F0", "purple": "0x8030C0",
}
TONES = {"low": 330, "middle": 550, "high": 880}
W, H, FPS = 64, 48, 8
SYSTEM_PROMPT = (
    "You are a video analyst. Each turn, reply with one JSON object with keys observation, "
    "think, confidence and action. Actions: get_frames {start, end, num}, get_audio {start, end}, "
    "get_clip {start, end}, answer {content}."
)


def scenes_for(rng, with_audio):
    names = rng.sample(list(COLOURS), rng.randint(3, 4))
    scenes, t = [], 0.0
    for name in names:
        length = float(rng.randint(3, 5))
        tone = rng.choice(list(TONES)) if with_audio else None
        scenes.append({"colour": name, "start": t, "end": t + length, "tone": tone})
        t += length
    return scenes


def encode(path, scenes, with_audio):
    args = ["ffmpeg", "-nostdin", "-y", "-loglevel", "error"]
    for s in scenes:
        d = s["end"] - s["start"]
        args += ["-f", "lavfi", "-i", f"color=c={COLOURS[s['colour']]}:s={W}x{H}:r={FPS}:d={d}"]
    if with_audio:
        for s in scenes:
            d = s["end"] - s["start"]
            args += ["-f", "lavfi", "-i", f"sine=frequency={TONES[s['tone']]}:sample_rate=16000:duration={d}"]
    n = len(scenes)
    graph = "".join(f"[{i}:v]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    if with_audio:
        graph += ";" + "".join(f"[{n + i}:a]" for i in range(n)) + f"concat=n={n}:v=0:a=1[a]"
    args += ["-filter_complex", graph, "-map", "[v]"]
    if with_audio:
        args += ["-map", "[a]", "-c:a", "aac", "-b:a", "32k", "-ac", "1", "-ar", "16000"]
    args += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "28", str(path)]
    subprocess.run(args, check=True)


def questions(rng, scenes, with_audio):
    duration = scenes[-1]["end"]
    pick = rng.choice(scenes)
    t = round(rng.uniform(pick["start"] + 0.5, pick["end"] - 0.5), 1)
    others = rng.sample([c for c in COLOURS if c != pick["colour"]], 3)
    opts = others + [pick["colour"]]
    rng.shuffle(opts)
    letters = "ABCD"
    out = [{
        "question_type": "MCQ_Colour",
        "question": f"What colour fills the screen at {t:.1f} seconds?",
        "options": [f"{letters[i]}. {c}" for i, c in enumerate(opts)],
        "answer": letters[opts.index(pick["colour"])],
        "look_at": t,
    }, {
        "question_type": "TR_Colour",
        "question": f"During which time range is the screen {pick['colour']}?",
        "options": [],
        "answer": json.dumps([[pick["start"], pick["end"]]]),
        "look_at": pick["start"],
    }, {
        "question_type": "NUM_Scenes",
        "question": "How many differently coloured scenes does the video show?",
        "options": [],
        "answer": str(len(scenes)),
        "look_at": duration / 2,
    }, {
        "question_type": "SIZE_Duration",
        "question": f"For how many seconds is the screen {pick['colour']}?",
        "options": [],
        "answer": f"{pick['end'] - pick['start']:.1f}",
        "look_at": pick["start"],
    }]
    if with_audio:
        tones = list(TONES)
        out.append({
            "question_type": "MCQ_Tone",
            "question": f"Which tone is heard at {t:.1f} seconds?",
            "options": [f"{letters[i]}. {name} ({TONES[name]} Hz)" for i, name in enumerate(tones)],
            "answer": letters[tones.index(pick["tone"])],
            "look_at": t,
        })
    return out


def expert_turns(q, video, duration, media_dir, media_rel, stem, scenes):
    """Two turns: sample 4 frames over the whole video, then answer."""
    times = [round(duration * (i + 0.5) / 4, 2) for i in range(4)]
    frames = []
    for t in times:
        png = media_dir / f"{stem}_{int(t * 100):05d}.png"
        if not png.exists():
            subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-ss", f"{t}", "-i", str(video),
                            "-frames:v", "1", str(png)], check=True)
        frames.append((t, f"{media_rel}/{png.name}"))
    seen = "; ".join(f"{t:.2f}s {next(s['colour'] for s in scenes if s['start'] <= t < s['end'])}" for t, _ in frames)
    act1 = {"observation": "Nothing inspected yet.", "think": "Scan the whole video first.", "confidence": 0.1,
            "action": {"type": "get_frames", "start": 0.0, "end": duration, "num": 4}}
    act2 = {"observation": f"[Frames] {seen}.", "think": "The frames settle the question.", "confidence": 0.95,
            "action": {"type": "answer", "content": q["answer"]}}
    user = {"role": "user", "content": [{"type": "text", "text": f"Question: {q['question']}"}]}
    media_msg = {"role": "user", "content": [{"type": "text", "text": f"Frames 0.00s-{duration:.2f}s (num=4)."}]}
    for t, rel in frames:
        media_msg["content"] += [{"type": "text", "text": f"Frame {t:.2f}s:"}, {"type": "image", "image": rel}]
    system = {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}
    turn1 = [system, user]
    turn2 = [system, user, {"role": "assistant", "content": [{"type": "text", "text": json.dumps(act1)}]}, media_msg]
    return [(turn1, json.dumps(act1), 0.0, False), (turn2, json.dumps(act2), 1.0, True)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/quickstart")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    out = Path(args.out)
    videos_dir, media_dir = out / "videos", out / "media"
    videos_dir.mkdir(parents=True, exist_ok=True)
    media_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    rl, ev, sft = [], [], []
    for i in range(12):
        with_audio = i % 3 != 2
        scenes = scenes_for(rng, with_audio)
        duration = scenes[-1]["end"]
        name = f"scene_{i:02d}.mp4"
        path = videos_dir / name
        if args.force or not path.exists():
            encode(path, scenes, with_audio)
        held_out = i >= 9
        for j, q in enumerate(questions(rng, scenes, with_audio)):
            common = {"question_type": q["question_type"], "question": q["question"], "options": q["options"],
                      "answer": q["answer"], "video": f"videos/{name}", "data_source": "quickstart"}
            if held_out:
                ev.append({**common, "ability": q["question_type"].split("_")[1].lower()})
                continue
            rl.append({"prompt": [{"content": "", "role": "user"}], **common, "fps": float(FPS),
                       "duration_seconds": duration, "has_audio": with_audio, "ability": "agent",
                       "extra_info": {"index": len(rl), "scenes": scenes}})
            traj = f"qs-{i:02d}-{j}"
            for step, (raw, output, reward, done) in enumerate(
                    expert_turns(q, path, duration, media_dir, "media", f"scene_{i:02d}", scenes), start=1):
                sft.append({"question_id": f"qs_{i}_{j}", "traj_id": traj, "step": step, "raw_input": raw,
                            "output": output, "step_reward": reward, "done": done, "episode_reward": 1.0,
                            "extra_info": {"video": f"videos/{name}", "question_type": q["question_type"],
                                           "has_audio": with_audio, "duration_seconds": duration}})
    for fname, rows in (("rl.jsonl", rl), ("eval.jsonl", ev), ("sft.jsonl", sft)):
        with open(out / fname, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    print(f"quickstart data in {out}: {len(rl)} RL samples, {len(ev)} eval samples, {len(sft)} SFT turns", file=sys.stderr)


if __name__ == "__main__":
    main()

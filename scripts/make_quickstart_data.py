#!/usr/bin/env python3
"""Generates the quickstart's dataset: short videos of coloured scenes, each scene with a tone,
a spoken digit (espeak-ng) or silence, and questions of every type (MCQ, TR, NUM, SIZE) whose
answers need the agent to look or listen at the right moment.

    python3 scripts/make_quickstart_data.py [--out data/quickstart] [--force]

Writes the prompts of 60 training videos, split by question type, and 48 held-out videos:
`sft_prompts.jsonl` (what the SFT stage's expert plays: the MCQ and NUM questions of every
training video, a second tone question on each training video with a tone after its first
scene, and the TR and SIZE questions of videos 0-11, enough to learn their answer format),
`rl.jsonl` (the TR and SIZE questions of videos 12-59, which SFT never trains on; the
quickstart's RL stage trains on both files), `eval.jsonl` (videos 60-107, held out: 236
questions), plus `sft.jsonl` (expert trajectories in the SFT file format for the MCQ colour
questions of videos 0-23, frames extracted to PNG so every media path exists) and the videos.
The held-out videos come after the training videos from the same random stream, so adding some
leaves every training file as it was. Deterministic (seeded); needs the
ffmpeg CLI and espeak-ng. Skips videos that exist unless --force.

Each prompt line's `extra_info` carries the annotated timeline (`scenes`) and the expert's first
action (`plan`): `omnirl train` rolls the rule-based expert (rollout::expert) out on these lines
to make its SFT rows, writing observations from the timeline for exactly the media it asked for.
"""
import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

COLOURS = {
    "red": "0xE02020", "green": "0x20C040", "blue": "0x2040E0",
    "yellow": "0xE0D020", "white": "0xF0F0F0", "purple": "0x8030C0",
}
TONES = {"low": 330, "middle": 550, "high": 880}
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
W, H, FPS, RATE = 64, 48, 4, 16000
TRAIN_VIDEOS, EVAL_VIDEOS = 60, 48
FORMAT_VIDEOS = 12          # TR and SIZE questions of videos [0, 12) go to SFT, the rest to RL
SFT_FILE_VIDEOS = 24        # sft.jsonl: MCQ colour trajectories of videos [0, 24)
RL_TYPES = ("TR_Colour", "SIZE_Duration")
SYSTEM_PROMPT = (
    "You are a video analyst. Each turn, reply with one JSON object with keys observation, "
    "think, confidence and action. Actions: get_frames {start, end, num}, get_audio {start, end}, "
    "get_clip {start, end}, answer {content}."
)


def scenes_for(rng, audio):
    """3-4 scenes of 3-5 whole seconds; audio is 'tones', 'speech' (one scene speaks a digit,
    the others carry tones) or None (a silent video)."""
    names = rng.sample(list(COLOURS), rng.randint(3, 4))
    speaking = rng.randrange(len(names)) if audio == "speech" else None
    scenes, t = [], 0
    for k, name in enumerate(names):
        length = rng.randint(3, 5)
        scene = {"colour": name, "start": float(t), "end": float(t + length), "tone": None, "digit": None}
        if audio is not None:
            if k == speaking:
                scene["digit"] = rng.randrange(10)
            else:
                scene["tone"] = rng.choice(list(TONES))
        scenes.append(scene)
        t += length
    return scenes


def speech_wav(digit, seconds, tmp):
    """The digit spoken by espeak-ng, padded with silence to the scene's length (16 kHz mono)."""
    raw = Path(tmp) / f"say_{digit}.wav"
    if not raw.exists():
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), DIGITS[digit]], check=True)
    out = Path(tmp) / f"say_{digit}_{seconds}.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(raw), "-af",
                    f"aresample={RATE},apad=whole_dur={seconds}", "-ac", "1", "-t", str(seconds), str(out)],
                   check=True)
    return out


def encode(path, scenes, tmp):
    audio = any(s["tone"] or s["digit"] is not None for s in scenes)
    args = ["ffmpeg", "-nostdin", "-y", "-loglevel", "error"]
    for s in scenes:
        args += ["-f", "lavfi", "-i", f"color=c={COLOURS[s['colour']]}:s={W}x{H}:r={FPS}:d={s['end'] - s['start']}"]
    if audio:
        for s in scenes:
            d = s["end"] - s["start"]
            if s["digit"] is not None:
                args += ["-i", str(speech_wav(s["digit"], int(d), tmp))]
            else:
                args += ["-f", "lavfi", "-i", f"sine=frequency={TONES[s['tone']]}:sample_rate={RATE}:duration={d}"]
    n = len(scenes)
    graph = "".join(f"[{i}:v]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    if audio:
        graph += ";" + "".join(f"[{n + i}:a]" for i in range(n)) + f"concat=n={n}:v=0:a=1[a]"
    args += ["-filter_complex", graph, "-map", "[v]"]
    if audio:
        args += ["-map", "[a]", "-c:a", "aac", "-b:a", "24k", "-ac", "1", "-ar", str(RATE)]
    args += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "30", "-g", "8", str(path)]
    subprocess.run(args, check=True)


def frames_plan(duration):
    return {"type": "get_frames", "start": 0.0, "end": duration, "num": 8}


def mcq_colour(scenes):
    """The colour the video opens with; the options are the whole palette in a fixed order, so
    the answer letter names a colour, not a position. (Questions at an arbitrary second need the
    agent to copy the time from the question into its action, which the tiny CPU model does not
    learn within the quickstart's budget; the start is a moment it can learn to look at.)"""
    names = list(COLOURS)
    return {
        "question_type": "MCQ_Colour",
        "question": "What colour fills the screen when the video starts?",
        "options": [f"{'ABCDEF'[i]}. {c}" for i, c in enumerate(names)],
        "answer": "ABCDEF"[names.index(scenes[0]["colour"])],
        "plan": {"type": "get_frames", "start": 0.0, "end": 0.0, "num": 1},
    }


def audio_window(rng, scene):
    a = rng.randint(int(scene["start"]), int(scene["end"]) - 2)
    return float(a), float(a + 2)


def tone_question(text, tone, start, end):
    """An MCQ on the tone heard in `[start, end]`, whose answer is `tone`."""
    names = list(TONES)
    return {
        "question_type": "MCQ_Tone",
        "question": text,
        "options": [f"{'ABC'[i]}. {name}" for i, name in enumerate(names)],
        "answer": "ABC"[names.index(tone)],
        "plan": {"type": "get_audio", "start": start, "end": end},
    }


def questions(rng, scenes):
    duration = scenes[-1]["end"]
    out = [mcq_colour(scenes)]
    pick = rng.choice(scenes)
    out += [{
        "question_type": "TR_Colour",
        "question": f"During which time range is the screen {pick['colour']}?",
        "options": [],
        "answer": json.dumps([[pick["start"], pick["end"]]]),
        "plan": frames_plan(duration),
    }, {
        "question_type": "NUM_Scenes",
        "question": "How many differently coloured scenes does the video show?",
        "options": [],
        "answer": str(len(scenes)),
        "plan": frames_plan(duration),
    }, {
        "question_type": "SIZE_Duration",
        "question": f"For how many seconds is the screen {rng.choice(scenes)['colour']}?",
        "options": [],
        "answer": None,
        "plan": frames_plan(duration),
    }]
    size = out[-1]
    colour = size["question"].split("screen ")[1].rstrip("?")
    s = next(x for x in scenes if x["colour"] == colour)
    size["answer"] = f"{s['end'] - s['start']:g}"
    if scenes[0]["tone"]:
        out.append(tone_question("Which tone is heard during the first two seconds?", scenes[0]["tone"], 0.0, 2.0))
    spoken = [s for s in scenes if s["digit"] is not None]
    if spoken:
        s = spoken[0]
        a, b = audio_window(rng, s)
        out.append({
            "question_type": "NUM_Digit",
            "question": f"Which digit is spoken from {a:g} to {b:g} seconds?",
            "options": [],
            "answer": str(s["digit"]),
            "plan": {"type": "get_audio", "start": a, "end": b},
        })
    return out


def extra_tone_question(rng, scenes):
    """A second tone question for a training video: a two-second window inside a later scene
    that carries a tone, or None. Drawn from its own stream, so the other files stay as they
    were."""
    later = [s for s in scenes[1:] if s["tone"]]
    if not later:
        return None
    s = rng.choice(later)
    a, b = audio_window(rng, s)
    return tone_question(f"Which tone is heard from {a:g} to {b:g} seconds?", s["tone"], a, b)


def sft_turns(q, video, media_dir, stem, scenes):
    """The SFT file's view of an MCQ colour question: look at the asked moment, then answer."""
    t = q["plan"]["start"]
    png = media_dir / f"{stem}_{int(t * 100):05d}.png"
    if not png.exists():
        subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-ss", f"{t}", "-i", str(video),
                        "-frames:v", "1", str(png)], check=True)
    colour = next(s["colour"] for s in scenes if s["start"] <= t < s["end"])
    letter = q["answer"]
    act1 = {"observation": "Nothing seen yet.", "think": "Look at the asked moment.", "confidence": 0.1,
            "action": q["plan"]}
    act2 = {"observation": f"{t:g}s {colour}.", "think": f"It is {colour}, option {letter}.", "confidence": 0.9,
            "action": {"type": "answer", "content": letter}}
    system = {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}
    user = {"role": "user", "content": [{"type": "text", "text": f"Question: {q['question']}"}]}
    media_msg = {"role": "user", "content": [{"type": "text", "text": f"Frame {t:.2f}s:"},
                                             {"type": "image", "image": f"media/{png.name}"}]}
    turn2 = [system, user, {"role": "assistant", "content": [{"type": "text", "text": json.dumps(act1)}]}, media_msg]
    return [([system, user], json.dumps(act1), 0.0, False), (turn2, json.dumps(act2), 1.0, True)]


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
    sft_prompts, rl, ev, sft = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(TRAIN_VIDEOS + EVAL_VIDEOS):
            audio = [None, "tones", "speech"][i % 3]
            scenes = scenes_for(rng, audio)
            duration = scenes[-1]["end"]
            name = f"scene_{i:02d}.mp4"
            path = videos_dir / name
            if args.force or not path.exists():
                encode(path, scenes, tmp)
            held_out = i >= TRAIN_VIDEOS
            qs = questions(rng, scenes)
            extra = None if held_out else extra_tone_question(random.Random(args.seed * 1000 + i), scenes)
            qs += [extra] if extra else []
            for j, q in enumerate(qs):
                common = {"question_type": q["question_type"], "question": q["question"], "options": q["options"],
                          "answer": q["answer"], "video": f"videos/{name}", "data_source": "quickstart"}
                if held_out:
                    ev.append({**common, "ability": q["question_type"].split("_")[1].lower()})
                    continue
                to_rl = q["question_type"] in RL_TYPES and i >= FORMAT_VIDEOS
                prompts = rl if to_rl else sft_prompts
                prompts.append({"prompt": [{"content": "", "role": "user"}], **common, "fps": float(FPS),
                                "duration_seconds": duration, "has_audio": audio is not None, "ability": "agent",
                                "extra_info": {"index": len(prompts), "scenes": scenes, "plan": q["plan"]}})
                if q["question_type"] != "MCQ_Colour" or i >= SFT_FILE_VIDEOS:
                    continue
                for step, (raw, output, reward, done) in enumerate(
                        sft_turns(q, path, media_dir, f"scene_{i:02d}", scenes), start=1):
                    sft.append({"question_id": f"qs_{i}_{j}", "traj_id": f"qs-{i:02d}-{j}", "step": step,
                                "raw_input": raw, "output": output, "step_reward": reward, "done": done,
                                "episode_reward": 1.0,
                                "extra_info": {"video": f"videos/{name}", "question_type": q["question_type"],
                                               "has_audio": audio is not None, "duration_seconds": duration}})
    for fname, rows in (("sft_prompts.jsonl", sft_prompts), ("rl.jsonl", rl), ("eval.jsonl", ev), ("sft.jsonl", sft)):
        with open(out / fname, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    print(f"quickstart data in {out}: {len(sft_prompts)} SFT prompts, {len(rl)} RL samples, {len(ev)} eval samples, {len(sft)} SFT turns",
          file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the media parity fixtures under rollout/tests/fixtures/media/ (dev-only).

Deterministic inputs (numpy, fixed seeds) go through the same steps the OmniAgent pipeline
runs, using the real libraries, built without the hub (explicit arguments, no from_pretrained):

* image: qwen-omni-utils' fetch_image step (smart_resize with factor 28, min 4*28*28, max
  1024*28*28, then PIL Image.resize bicubic) -> transformers' Qwen2VLImageProcessor
  (OpenAI CLIP mean/std, patch 14, temporal 2, merge 2) -> pixel_values, image_grid_thw;
* video: fetch_video's resize (torchvision resize, BICUBIC, antialias=True, on uint8 frames)
  -> Qwen2VLVideoProcessor -> pixel_values_videos, video_grid_thw (a reduced pixel budget keeps
  the fixture small; the budget arithmetic itself is tested in Rust against hand values);
* audio: WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160,
  chunk_length=300, n_fft=400, dither=0.0) with padding="max_length" -> input_features, of
  which the valid frames (attention mask) are kept.

Output: manifest.json (shapes, sizes, library versions) and little-endian raw arrays
(*.u8, *.i16, *.f32). Run from the repository root with a Python that has numpy, pillow,
torch, torchvision and transformers, e.g.:

    python3 -m venv /tmp/fixture-venv
    /tmp/fixture-venv/bin/pip install numpy pillow torch torchvision transformers
    /tmp/fixture-venv/bin/python scripts/make_media_fixtures.py
"""
import json
import math
import os
import sys

import numpy as np
import PIL
import torch
import torchvision
import transformers
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from transformers import WhisperFeatureExtractor
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "rollout", "tests", "fixtures", "media")
FACTOR = 28


def smart_resize(h, w, factor, min_pixels, max_pixels):
    """qwen-omni-utils' smart_resize (Python round = half to even)."""
    h_bar = max(factor, round(h / factor) * factor)
    w_bar = max(factor, round(w / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        h_bar = max(factor, math.floor(h / beta / factor) * factor)
        w_bar = max(factor, math.floor(w / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        h_bar = math.ceil(h * beta / factor) * factor
        w_bar = math.ceil(w * beta / factor) * factor
    return h_bar, w_bar


def picture(rng, h, w):
    """Smooth gradients plus noise: realistic enough, and full of rounding cases."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([x / max(w - 1, 1) * 255, y / max(h - 1, 1) * 255, (x + y) / (h + w) * 255], axis=-1)
    base += 60 * np.sin(x[..., None] * 0.7 + y[..., None] * 0.3 + np.arange(3))
    return np.clip(base + rng.normal(0, 25, size=base.shape), 0, 255).astype(np.uint8)


def save(name, array):
    path = os.path.join(OUT, name)
    np.ascontiguousarray(array).tofile(path)
    return name


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240607)
    manifest = {
        "generator": "scripts/make_media_fixtures.py",
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "pillow": PIL.__version__,
            "numpy": np.__version__,
        },
        "images": [],
        "videos": [],
        "audio": [],
    }

    # Images: one downscale (61x43 -> 56x56), one upscale (30x20 -> 84x56).
    image_proc = Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=1024 * 28 * 28)
    for i, (h, w, with_pixels) in enumerate([(43, 61, True), (20, 30, False)]):
        src = picture(rng, h, w)
        th, tw = smart_resize(h, w, FACTOR, 4 * 28 * 28, 1024 * 28 * 28)
        resized = np.asarray(Image.fromarray(src, "RGB").resize((tw, th), Image.BICUBIC))
        out = image_proc(images=[Image.fromarray(resized, "RGB")], return_tensors="np")
        grid = [int(v) for v in out["image_grid_thw"][0]]
        entry = {
            "input": save(f"image{i}_in.u8", src),
            "height": h,
            "width": w,
            "resized": save(f"image{i}_resized.u8", resized),
            "resized_height": th,
            "resized_width": tw,
            "grid_thw": grid,
        }
        if with_pixels:
            pv = np.asarray(out["pixel_values"], dtype=np.float32)
            entry["pixel_values"] = save(f"image{i}_pixels.f32", pv)
            entry["pixel_rows"] = int(pv.shape[0])
        manifest["images"].append(entry)

    # Video: 2 frames of 75x41 resized (torchvision bicubic, antialias) to 56x28, then the
    # video processor with a budget that keeps that size.
    frames = np.stack([picture(rng, 41, 75) for _ in range(2)])
    th, tw = 28, 56
    t = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    resized = TF.resize(t, [th, tw], interpolation=InterpolationMode.BICUBIC, antialias=True)
    # torch's value before rounding (ties there depend on the CPU's fused multiply-adds).
    exact = torch.nn.functional.interpolate(t.float(), size=[th, tw], mode="bicubic", align_corners=False,
                                            antialias=True)
    video_proc = Qwen2VLVideoProcessor(size={"shortest_edge": 28 * 28, "longest_edge": 768 * 28 * 28})
    out = video_proc(videos=[resized.float()], return_tensors="np", cap_pixels_per_frame=False)
    pv = np.asarray(out["pixel_values_videos"], dtype=np.float32)
    manifest["videos"].append({
        "input": save("video0_in.u8", frames),
        "frames": 2,
        "height": 41,
        "width": 75,
        "resized": save("video0_resized.u8", resized.permute(0, 2, 3, 1).contiguous().numpy()),
        "resized_float": save("video0_resized.f32", exact.permute(0, 2, 3, 1).contiguous().numpy()),
        "resized_height": th,
        "resized_width": tw,
        "grid_thw": [int(v) for v in out["video_grid_thw"][0]],
        "pixel_values": save("video0_pixels.f32", pv),
        "pixel_rows": int(pv.shape[0]),
    })

    # Audio: 1.0 s + 37 samples of two tones and noise, as 16-bit values / 32768 (what a WAV
    # round trip gives), and a quiet 0.3 s clip.
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=300,
                                 n_fft=400, padding_value=0.0, return_attention_mask=True, dither=0.0)
    for i, (n, amp) in enumerate([(16037, 0.4), (4800, 0.003)]):
        k = np.arange(n)
        wave = amp * (np.sin(2 * np.pi * 440 * k / 16000) + 0.5 * np.sin(2 * np.pi * 3150 * k / 16000))
        wave += amp * 0.1 * rng.normal(size=n)
        pcm = np.clip(np.round(wave * 32768), -32768, 32767).astype(np.int16)
        f32 = pcm.astype(np.float32) / 32768.0
        feats = fe(f32, sampling_rate=16000, padding="max_length", return_attention_mask=True, return_tensors="np")
        valid = int(feats["attention_mask"][0].sum())
        mel = np.asarray(feats["input_features"][0][:, :valid], dtype=np.float32)
        manifest["audio"].append({
            "input": save(f"audio{i}_in.i16", pcm),
            "samples": n,
            "frames": valid,
            "features": save(f"audio{i}_mel.f32", mel),
        })

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, x)) for x in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total / 1024:.0f} KiB, to {os.path.normpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Dev-only: builds the tiny random Qwen2.5-Omni thinker and the reference outputs the Rust parity
tests (trainer/tests/model_parity.rs) compare against. Needs torch + transformers (CPU is fine):

    python -m venv /tmp/model-fixture-venv && /tmp/model-fixture-venv/bin/pip install torch transformers
    /tmp/model-fixture-venv/bin/python scripts/make_model_fixtures.py            # writes the fixtures
    /tmp/model-fixture-venv/bin/python scripts/make_model_fixtures.py verify DIR # a Rust-saved checkpoint
                                                                                # loads in transformers and
                                                                                # reproduces the logits

Outputs (trainer/tests/fixtures/model/):
  tiny/            the checkpoint in the released on-disk layout: Omni config.json (thinker_config
                   nested, transformers-4 spelling), `thinker.`-prefixed tensors in 2 shards + index,
                   plus a talker and a token2wav tensor the loader must skip. f32, every size differs
                   from the 7B and the special ids are remapped.
  cases.safetensors  per case (text, image, video, audio, video_audio): ids, media inputs, the
                   position ids + rope delta of get_rope_index, fp32 logits, 8 greedy tokens.
  chat_ids.json    (only when ~/.cache/omnirl/qwen25-omni-tokenizer/tokenizer.json exists, see
                   scripts/fetch_qwen_tokenizer.sh) sample conversations and the ids transformers'
                   tokenizer gives for the rendered Omni chat template with processor expansion.

Nothing here downloads a model: the thinker is built from a config with random weights.
"""
import json
import os
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration
from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import Qwen2_5OmniProcessor

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "trainer" / "tests" / "fixtures" / "model"

# Special ids remapped (the 7B uses 151643..151656).
IDS = dict(image=500, video=501, audio=502, audio_bos=503, audio_eos=504, vision_bos=505, vision_eos=506,
           vision_pad=507, bos=508, eos=509, pad=510)
VOCAB = 512
GREEDY = 8

THINKER = {
    "architectures": ["Qwen2_5OmniThinkerForConditionalGeneration"], "model_type": "qwen2_5_omni_thinker",
    "torch_dtype": "float32",
    "audio_token_index": IDS["audio"], "image_token_index": IDS["image"], "video_token_index": IDS["video"],
    "audio_start_token_id": IDS["audio_bos"], "audio_end_token_id": IDS["audio_eos"],
    "vision_start_token_id": IDS["vision_bos"], "vision_end_token_id": IDS["vision_eos"],
    "vision_token_id": IDS["vision_pad"], "bos_token_id": IDS["bos"], "eos_token_id": IDS["eos"],
    "pad_token_id": IDS["pad"], "user_token_id": 7,
    "position_id_per_seconds": 10, "seconds_per_chunk": 3, "tie_word_embeddings": False, "initializer_range": 0.1,
    "text_config": {
        "model_type": "qwen2_5_omni_text", "vocab_size": VOCAB, "hidden_size": 48, "intermediate_size": 96,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "rope_scaling": {"mrope_section": [2, 2, 2], "type": "default", "rope_type": "default"},
        "tie_word_embeddings": False, "use_sliding_window": False, "sliding_window": 4096,
        "initializer_range": 0.1,
    },
    "vision_config": {
        "model_type": "qwen2_5_omni_vision_encoder", "depth": 3, "hidden_size": 32, "num_heads": 2,
        "intermediate_size": 40, "hidden_act": "silu", "patch_size": 8, "spatial_merge_size": 2,
        "temporal_patch_size": 2, "window_size": 32, "fullatt_block_indexes": [1], "out_hidden_size": 48,
        "in_channels": 3, "tokens_per_second": 10, "initializer_range": 0.1,
    },
    "audio_config": {
        "model_type": "qwen2_5_omni_audio_encoder", "d_model": 32, "encoder_layers": 2,
        "encoder_attention_heads": 4, "encoder_ffn_dim": 48, "num_mel_bins": 20, "max_source_positions": 50,
        "n_window": 10, "output_dim": 48, "activation_function": "gelu", "scale_embedding": False,
        "initializer_range": 0.1,
    },
}
PATCH_DIM = 3 * 2 * 8 * 8


def hf_config():
    th = json.loads(json.dumps(THINKER))
    tc = th["text_config"]
    tc["rope_parameters"] = {"rope_type": "default", "rope_theta": tc.pop("rope_theta"),
                             "mrope_section": tc.pop("rope_scaling")["mrope_section"]}
    for k in ("architectures", "model_type", "torch_dtype"):
        th.pop(k)
    return Qwen2_5OmniThinkerConfig(**th)


def fake_processor():
    """`self` for Qwen2_5OmniProcessor's placeholder methods without a tokenizer."""
    p = types.SimpleNamespace(
        audio_token="<|AUDIO|>", image_token="<|IMAGE|>", video_token="<|VIDEO|>",
        vision_bos_token="<|vision_bos|>", vision_eos_token="<|vision_eos|>",
        audio_bos_token="<|audio_bos|>", audio_eos_token="<|audio_eos|>",
        image_processor=types.SimpleNamespace(merge_size=2), video_processor=types.SimpleNamespace(merge_size=2))
    for m in ("get_chunked_index", "replace_image_token", "replace_audio_token", "replace_video_with_audio_token"):
        setattr(p, m, types.MethodType(getattr(Qwen2_5OmniProcessor, m), p))
    return p


def expand(text, audio_frames, image_grids, video_grids, spg, use_audio_in_video, pps, spc):
    """The processor's placeholder expansion (its own replace_* methods) on a template string."""
    p = fake_processor()
    lens = [int(((f - 1) // 2 + 1 - 2) // 2 + 1) for f in audio_frames]
    images = {"image_grid_thw": torch.tensor(image_grids, dtype=torch.long).reshape(-1, 3)}
    videos = {"video_grid_thw": torch.tensor(video_grids, dtype=torch.long).reshape(-1, 3),
              "video_second_per_grid": list(spg)}
    audios = {"num_audio_tokens": lens}
    out, i, counts = "", 0, {"img": 0, "vid": 0, "aud": 0}
    while i < len(text):
        if text.startswith("<|IMAGE|>", i):
            out += p.replace_image_token(images, counts["img"])
            counts["img"] += 1
            i += len("<|IMAGE|>")
        elif text.startswith("<|AUDIO|>", i):
            out += p.replace_audio_token(audios, counts["aud"])
            counts["aud"] += 1
            i += len("<|AUDIO|>")
        elif text.startswith("<|VIDEO|>", i):
            if use_audio_in_video:
                out += p.replace_video_with_audio_token(videos, counts["vid"], audios, counts["aud"],
                                                        position_id_per_seconds=pps, seconds_per_chunk=spc)
                counts["aud"] += 1
            else:
                g = videos["video_grid_thw"][counts["vid"]]
                out += "<|VIDEO|>" * int(g.prod() // 4)
            counts["vid"] += 1
            i += len("<|VIDEO|>")
        else:
            out += text[i]
            i += 1
    return out


TINY_STR = {"<|IMAGE|>": IDS["image"], "<|VIDEO|>": IDS["video"], "<|AUDIO|>": IDS["audio"],
            "<|audio_bos|>": IDS["audio_bos"], "<|audio_eos|>": IDS["audio_eos"],
            "<|vision_bos|>": IDS["vision_bos"], "<|vision_eos|>": IDS["vision_eos"]}


def to_tiny_ids(s, gen):
    """Expanded template string -> ids: control strings by id, each other character a random text id."""
    out, i = [], 0
    while i < len(s):
        for k, v in TINY_STR.items():
            if s.startswith(k, i):
                out.append(v)
                i += len(k)
                break
        else:
            out.append(int(torch.randint(0, 490, (1,), generator=gen)))
            i += 1
    return out


def cases(gen):
    """(name, template text, media) per case."""
    rnd = lambda *s: torch.randn(*s, generator=gen)
    img = dict(grids=[[1, 6, 10]], pix=[rnd(60, PATCH_DIM)])
    vid = dict(grids=[[4, 4, 6]], pix=[rnd(96, PATCH_DIM)])
    return [
        ("text", "abcdefghijklmnopqrst", {}),
        ("image", "ab<|vision_bos|><|IMAGE|><|vision_eos|>cdefg", {"image": img}),
        ("video", "a<|vision_bos|><|VIDEO|><|vision_eos|>bcd", {"video": dict(vid, spg=[2 / 1.5])}),
        ("audio", "abc<|audio_bos|><|AUDIO|><|audio_eos|>de", {"audio": [rnd(20, 53)]}),
        ("video_audio", "ab<|vision_bos|><|VIDEO|><|vision_eos|>cde",
         {"video": dict(grids=[[4, 4, 6]], pix=[rnd(96, PATCH_DIM)], spg=[1.0]), "audio": [rnd(20, 150)],
          "audio_in_video": True}),
    ]


def model_inputs(ids, media):
    kw = dict(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    if "image" in media:
        kw["pixel_values"] = torch.cat(media["image"]["pix"])
        kw["image_grid_thw"] = torch.tensor(media["image"]["grids"])
    if "video" in media:
        kw["pixel_values_videos"] = torch.cat(media["video"]["pix"])
        kw["video_grid_thw"] = torch.tensor(media["video"]["grids"])
        kw["video_second_per_grid"] = torch.tensor(media["video"]["spg"])
    if "audio" in media:
        frames = [a.shape[1] for a in media["audio"]]
        feats = torch.zeros(len(frames), 20, max(frames))
        mask = torch.zeros(len(frames), max(frames), dtype=torch.long)
        for i, a in enumerate(media["audio"]):
            feats[i, :, : a.shape[1]] = a
            mask[i, : a.shape[1]] = 1
        kw["input_features"] = feats
        kw["feature_attention_mask"] = mask
    kw["use_audio_in_video"] = bool(media.get("audio_in_video"))
    return kw


def rope(model, kw):
    f = getattr(model, "get_rope_index", None) or model.model.get_rope_index
    audio_lens = kw["feature_attention_mask"].sum(-1) if "feature_attention_mask" in kw else None
    return f(kw["input_ids"], kw.get("image_grid_thw"), kw.get("video_grid_thw"), kw["attention_mask"],
             kw["use_audio_in_video"], audio_lens, kw.get("video_second_per_grid"))


def greedy_manual(model, kw, n):
    """Greedy without a cache: full forward each step, positions recomputed over the whole sequence."""
    ids = kw["input_ids"]
    out, margins = [], []
    for _ in range(n):
        k = dict(kw, input_ids=ids, attention_mask=torch.ones_like(ids))
        logits = model(**k).logits[0, -1]
        top = torch.topk(logits, 2).values
        margins.append(float(top[0] - top[1]))
        nxt = int(logits.argmax())
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    return out, min(margins)


def write_checkpoint(model, path):
    """Omni layout: thinker.-prefixed keys, 2 shards + index, a talker and token2wav tensor."""
    path.mkdir(parents=True, exist_ok=True)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    # transformers 5 in-memory names -> released names.
    def released(k):
        for a, b in (("model.language_model.", "model."), ("model.visual.", "visual."),
                     ("model.audio_tower.", "audio_tower.")):
            if k.startswith(a):
                return "thinker." + b + k[len(a):]
        return "thinker." + k
    named = {released(k): v for k, v in sd.items()}
    names = sorted(named)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    extra = {"talker.codec_head.weight": torch.zeros(4, 8), "token2wav.code_embedding.weight": torch.zeros(3, 2)}
    weight_map, total = {}, 0
    for i, (file, keys) in enumerate(shards.items()):
        tensors = {k: named[k] for k in keys}
        if i == 1:
            tensors.update(extra)
        save_file(tensors, str(path / file), metadata={"format": "pt"})
        for k, v in tensors.items():
            weight_map[k] = file
            total += v.numel() * v.element_size()
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    cfg = {"architectures": ["Qwen2_5OmniModel"], "model_type": "qwen2_5_omni", "torch_dtype": "float32",
           "enable_audio_output": False, "thinker_config": THINKER,
           "talker_config": {"hidden_size": 8}, "token2wav_config": {}}
    (path / "config.json").write_text(json.dumps(cfg, indent=2))


def chat_fixture():
    tok_path = Path(os.environ.get("OMNIRL_CACHE", Path.home() / ".cache" / "omnirl")) / "qwen25-omni-tokenizer" / "tokenizer.json"
    if not tok_path.exists():
        print(f"skipping chat_ids.json: {tok_path} missing (run scripts/fetch_qwen_tokenizer.sh)")
        return
    from jinja2 import Template
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tok_path))
    tmpl = Template(CHAT_TEMPLATE)
    system = ("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
              "perceiving auditory and visual inputs, as well as generating text and speech.")
    convs = [
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hello, world!  How are you?\n\nFine."}]}],
         "media": {}},
        {"messages": [{"role": "system", "content": [{"type": "text", "text": system}]},
                      {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this? 数字 123"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "<answer>B</answer>"}]},
                      {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": " Listen\tthen  answer."}]}],
         "media": {"image_grids": [[1, 8, 12]], "audio_frames": [404]}},
        {"messages": [{"role": "system", "content": [{"type": "text", "text": "S"}]},
                      {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "\n  Where?  "}]}],
         "media": {"video_grids": [[10, 40, 72]], "spg": [1.0], "audio_frames": [1000], "audio_in_video": True}},
        {"messages": [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "silent"}]}],
         "media": {"video_grids": [[3, 6, 8]], "spg": [2 / 1.5]}},
    ]
    out = []
    for c in convs:
        text = tmpl.render(messages=c["messages"], add_generation_prompt=True, add_vision_id=False, add_audio_id=False)
        m = c["media"]
        if m:
            text = expand(text, m.get("audio_frames", []), m.get("image_grids", []), m.get("video_grids", []),
                          m.get("spg", []), bool(m.get("audio_in_video")), 25, 2)
        out.append({"messages": c["messages"], "media": m, "ids": tok(text)["input_ids"]})
    (OUT / "chat_ids.json").write_text(json.dumps(out, ensure_ascii=False))
    print(f"chat_ids.json: {len(out)} conversations")


CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}{% set audio_count.value = audio_count.value + 1 %}"
    "{% if add_audio_id %}Audio {{ audio_count.value }}: {% endif %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def make():
    torch.manual_seed(1234)
    gen = torch.Generator().manual_seed(99)
    model = Qwen2_5OmniThinkerForConditionalGeneration(hf_config()).eval().float()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = IDS["pad"]
    OUT.mkdir(parents=True, exist_ok=True)
    write_checkpoint(model, OUT / "tiny")
    pps, spc = THINKER["position_id_per_seconds"], THINKER["seconds_per_chunk"]
    tensors = {}
    with torch.no_grad():
        for name, text, media in cases(gen):
            v = media.get("video", {})
            s = expand(text, [a.shape[1] for a in media.get("audio", [])], media.get("image", {}).get("grids", []),
                       v.get("grids", []), v.get("spg", []), bool(media.get("audio_in_video")), pps, spc)
            ids = to_tiny_ids(s, gen)
            kw = model_inputs(ids, media)
            pos, delta = rope(model, kw)
            logits = model(**kw).logits[0]
            greedy = model.generate(**kw, max_new_tokens=GREEDY, do_sample=False)[0, len(ids):].tolist()
            manual, margin = greedy_manual(model, kw, GREEDY)
            assert greedy == manual, (name, greedy, manual)
            p = f"{name}."
            tensors[p + "ids"] = torch.tensor(ids)
            tensors[p + "positions"] = pos[:, 0, :].contiguous()
            tensors[p + "rope_delta"] = delta.reshape(1)
            tensors[p + "logits"] = logits.contiguous()
            tensors[p + "greedy"] = torch.tensor(greedy)
            if "image" in media:
                tensors[p + "image_pixels"] = kw["pixel_values"]
                tensors[p + "image_grids"] = kw["image_grid_thw"]
            if "video" in media:
                tensors[p + "video_pixels"] = kw["pixel_values_videos"]
                tensors[p + "video_grids"] = kw["video_grid_thw"]
                tensors[p + "video_second_per_grid"] = kw["video_second_per_grid"].double()
            if "audio" in media:
                tensors[p + "audio_mel"] = torch.cat(media["audio"], 1).contiguous()
                tensors[p + "audio_frames"] = torch.tensor([a.shape[1] for a in media["audio"]])
            print(f"{name}: {len(ids)} tokens, greedy {greedy}, min top-2 margin {margin:.4f}, rope delta {int(delta)}")
    save_file(tensors, str(OUT / "cases.safetensors"), metadata={"format": "pt"})
    chat_fixture()


def verify(path):
    """Loads a checkpoint directory (e.g. one our Rust code saved) and checks the text case."""
    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    ref = load_file(str(OUT / "cases.safetensors"))
    worst = 0.0
    with torch.no_grad():
        for name in ("text", "image"):
            ids = ref[f"{name}.ids"].tolist()
            media = {}
            if f"{name}.image_pixels" in ref:
                media["image"] = {"grids": ref[f"{name}.image_grids"].tolist(), "pix": [ref[f"{name}.image_pixels"]]}
            logits = model(**model_inputs(ids, media)).logits[0]
            worst = max(worst, float((logits - ref[f"{name}.logits"]).abs().max()))
    print(f"{path}: loads in transformers; max |logits - fixture| = {worst:.2e}")
    assert worst < 1e-4, worst


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "verify":
        verify(sys.argv[2])
    else:
        make()

"""Shared helpers of the Python peers (peer_learner.py, peer_decode.py): the same model shapes,
token ids, FLOP / byte formulas and GPU peaks as `omnirl bench` (trainer/src/bench), so the two
sides of every comparison measure the same thing.

The peer model is transformers' Qwen2ForCausalLM with the thinker LLM's shapes (Qwen2.5-Omni's
thinker text model is a Qwen2 decoder; its M-RoPE reduces to 1-D RoPE on text, at the same cost),
randomly initialised directly on the device in the benchmark dtype, SDPA attention.
Left out: the vision / audio encoders (not benchmarked against a peer).
"""
import json
import os
import sys

SHAPES = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                 intermediate_size=64, vocab_size=152064),
    "mid": dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                intermediate_size=1536, vocab_size=152064),
    "7b": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
               intermediate_size=18944, vocab_size=152064),
}

# Substring of torch.cuda.get_device_name() -> (dense bf16 TFLOP/s, HBM GB/s); as bench::hw.
PEAKS = [("H200", 989.0, 4800.0), ("H100 PCIe", 756.0, 2000.0), ("H100 NVL", 835.0, 3900.0),
         ("H100", 989.0, 3350.0), ("A100-SXM4-80GB", 312.0, 2039.0), ("A100", 312.0, 1555.0)]

PLAIN_VOCAB = 151643


def plain_ids(n, salt):
    """bench::plain_ids: (i * 104729 + salt * 7919) % 151643."""
    return [(i * 104729 + salt * 7919) % PLAIN_VOCAB for i in range(n)]


def device_info(torch, dev):
    if dev == "cpu":
        return {"device": "cpu", "gpu": None, "peaks": None, "libtorch_threads": torch.get_num_threads()}
    name = torch.cuda.get_device_name(0)
    peaks = next(({"bf16_tflops": t, "hbm_gbps": h} for k, t, h in PEAKS if k in name), None)
    return {"device": "cuda:0", "gpu": name, "peaks": peaks, "libtorch_threads": torch.get_num_threads()}


def dtype_of(torch, name, dev):
    if name == "auto":
        name = "f32" if dev == "cpu" else "bf16"
    return {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[name], name


def build_model(torch, shape, dtype, dev, seed):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(rope_theta=1e6, max_position_embeddings=32768, tie_word_embeddings=False,
                      rms_norm_eps=1e-6, attn_implementation="sdpa", **SHAPES[shape])
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(dev):
            model = Qwen2ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    return model.to(device=dev, dtype=dtype)


def shape_info(shape, model):
    s = SHAPES[shape]
    llm = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight.numel()
    return {"name": shape, "hidden": s["hidden_size"], "layers": s["num_hidden_layers"],
            "heads": s["num_attention_heads"], "kv_heads": s["num_key_value_heads"],
            "head_dim": s["hidden_size"] // s["num_attention_heads"], "intermediate": s["intermediate_size"],
            "vocab": s["vocab_size"], "llm_params": llm, "matmul_params": llm - embed}


def versions(torch):
    import transformers
    return {"torch": torch.__version__, "transformers": transformers.__version__}


def emit(record):
    print(json.dumps(record), flush=True)


def fail(bench, err):
    emit({"bench": bench, "implementation": "transformers", "error": f"{type(err).__name__}: {err}"})
    sys.exit(2)


def env_threads(torch):
    n = os.environ.get("OMNIRL_PEER_THREADS")
    if n:
        torch.set_num_threads(int(n))

#!/usr/bin/env python3
"""The transformers peer of `omnirl bench decode`: decode tokens/s of `model.generate` (greedy,
`min_new_tokens` = `max_new_tokens`, default dynamic KV cache, SDPA) on Qwen2ForCausalLM with the
thinker LLM's shapes, random init, at the same batch sizes, prompts (the same token ids) and
lengths, and the same HBM-roofline bytes formula. Prefill is timed as a 1-token generate; decode
as (new + 1)-token generate minus that, best of `--reps`. Prints one JSON line.

  python3 peer_decode.py --shape 7b --batch 1,16,64 --prompt-len 512 --new-tokens 128

Left out: static caches / torch.compile (not `generate`'s defaults).
"""
import argparse
import time

from peer_common import build_model, device_info, dtype_of, emit, env_threads, fail, plain_ids, shape_info, versions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="tiny", choices=["tiny", "mid", "7b"])
    ap.add_argument("--batch", default="1,16,64")
    ap.add_argument("--prompt-len", type=int, default=None)
    ap.add_argument("--new-tokens", type=int, default=None)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        run(a)
    except Exception as e:
        fail("decode", e)


def run(a):
    import torch
    env_threads(torch)
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device.split(":")[0]
    dtype, dname = dtype_of(torch, a.dtype, dev)
    prompt = a.prompt_len or {"tiny": 32, "mid": 128, "7b": 512}[a.shape]
    new = a.new_tokens or {"tiny": 16, "mid": 32, "7b": 128}[a.shape]
    model = build_model(torch, a.shape, dtype, dev, a.seed).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    info = shape_info(a.shape, model)
    elt = 2 if dtype in (torch.bfloat16, torch.float16) else 4
    kv = 2 * info["layers"] * info["kv_heads"] * info["head_dim"] * elt
    devi = device_info(torch, dev)
    hbm = devi["peaks"]["hbm_gbps"] if devi["peaks"] else None

    def gen(ids, n):
        with torch.no_grad():
            return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                  do_sample=False)

    def timed(ids, n):
        sync()
        t0 = time.perf_counter()
        gen(ids, n)
        sync()
        return time.perf_counter() - t0

    rows = []
    for b in [int(x) for x in a.batch.split(",") if x]:
        ids = torch.tensor([plain_ids(prompt, r + 1) for r in range(b)], device=dev)
        gen(ids, 2)
        prefill = min(timed(ids, 1) for _ in range(a.reps))
        total = min(timed(ids, new + 1) for _ in range(a.reps))
        decode = max(total - prefill, 1e-9)
        step = decode / new
        nbytes = (info["matmul_params"] + b * info["hidden"]) * elt + b * (prompt + (new + 1) / 2) * kv
        gbps = nbytes / step / 1e9
        rows.append({"batch": b, "prompt_len": prompt, "new_tokens": new, "prefill_s": prefill,
                     "prefill_tokens_per_s": b * prompt / prefill, "decode_s": decode,
                     "decode_tokens_per_s": b * new / decode, "step_ms": step * 1e3, "bytes_per_step": nbytes,
                     "achieved_gbps": gbps, "hbm_share": gbps / hbm if hbm else None})
    emit({"bench": "decode", "implementation": "transformers", **versions(torch), "device": devi, "shape": info,
          "dtype": dname, "compute_dtype": dname, "rows": rows})


if __name__ == "__main__":
    main()

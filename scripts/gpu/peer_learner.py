#!/usr/bin/env python3
"""The transformers peer of `omnirl bench learner`: forward + backward tokens/s and MFU of
Qwen2ForCausalLM with the thinker LLM's shapes (peer_common.py), random init, every weight
trained (no optimizer step), gradient checkpointing (non-reentrant) when asked, one packed
sequence of the same token ids, loss = mean NLL of tokens 1..L (transformers' own shifted loss,
fp32 log-softmax). Prints one JSON line shaped like omnirl's record.

  python3 peer_learner.py --shape 7b --seq-len 8192 --dtype bf16 --checkpointing --steps 3

Left out: LoRA (omnirl's --lora-rank has no peer here) and the optimizer step.
"""
import argparse
import time

from peer_common import build_model, device_info, dtype_of, emit, env_threads, fail, plain_ids, shape_info, versions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="tiny", choices=["tiny", "mid", "7b"])
    ap.add_argument("--seq-len", type=int, default=None)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        run(a)
    except Exception as e:  # one JSON line with the error, for the report
        fail("learner", e)


def run(a):
    import torch
    env_threads(torch)
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device.split(":")[0]
    dtype, dname = dtype_of(torch, a.dtype, dev)
    seq = a.seq_len or {"tiny": 256, "mid": 1024, "7b": 8192}[a.shape]
    model = build_model(torch, a.shape, dtype, dev, a.seed)
    model.train()
    model.config.use_cache = False
    if a.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ids = torch.tensor([plain_ids(seq, 1)], device=dev)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, loss = [], float("nan")
    for i in range(a.warmup + a.steps):
        sync()
        t0 = time.perf_counter()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
        loss = out.loss.item()
        del out
        model.zero_grad(set_to_none=False)
    info = shape_info(a.shape, model)
    n = info["matmul_params"]
    attn = 2.0 * seq * info["heads"] * info["head_dim"] * info["layers"]
    fpt = 6.0 * n + 3.0 * attn
    hfpt = fpt + (2.0 * n + attn if a.checkpointing else 0.0)
    step = sum(times) / len(times)
    tps = seq / step
    devi = device_info(torch, dev)
    peak = devi["peaks"]["bf16_tflops"] if devi["peaks"] else None
    mem = None
    if dev == "cuda":
        mem = {"max_allocated_bytes": torch.cuda.max_memory_allocated(),
               "max_reserved_bytes": torch.cuda.max_memory_reserved()}
    emit({"bench": "learner", "implementation": "transformers", **versions(torch), "device": devi,
          "shape": info, "dtype": dname, "compute_dtype": dname, "seq_len": seq, "checkpointing": a.checkpointing,
          "lora_rank": 0, "trainable_params": sum(p.numel() for p in model.parameters()), "steps": a.steps,
          "step_s": step, "step_s_min": min(times), "tokens_per_s": tps, "flops_per_token": fpt,
          "hardware_flops_per_token": hfpt, "achieved_tflops": tps * fpt / 1e12,
          "mfu": tps * fpt / (peak * 1e12) if peak else None, "hfu": tps * hfpt / (peak * 1e12) if peak else None,
          "loss": loss, "torch_memory": mem})


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Thinker LLM throughput: omnirl (tch) beside PyTorch + transformers with the same shapes, in the
# same run. Prints one JSON line per measurement.
#
#   scripts/bench_model.sh                         # CPU: the small config (f32)
#   OMNIRL_BENCH=7b OMNIRL_BENCH_HBM_GBPS=3350 scripts/bench_model.sh   # H100 SXM: 7B shape, bf16
#
# Measures prefill and decode tokens/s at batch 1, 16, 64 (OMNIRL_BENCH_BATCHES), decode bytes per
# step against the HBM peak, and forward+backward tokens/s with activation checkpointing (omnirl:
# LoRA r16 on a frozen base, chunked lm_head; transformers: frozen base with gradient
# checkpointing, so both back-propagate activations through every layer). The Python side runs
# when OMNIRL_BENCH_PYTHON (default python3) imports torch and transformers; the binary needs a
# libtorch build of the same kind (CUDA for the GPU run: scripts/setup.sh --cuda, --features cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f .omnirl.env ]] && source .omnirl.env

features=()
if [[ "${OMNIRL_TORCH_VARIANT:-cpu}" == "cuda" ]]; then features=(--features cuda); fi
cargo test --release -p trainer "${features[@]}" --test model_bench -- --ignored --nocapture --test-threads 1 \
    2>&1 | grep '^{' || { echo "omnirl benchmark failed" >&2; exit 1; }

py="${OMNIRL_BENCH_PYTHON:-python3}"
if ! "$py" -c 'import torch, transformers' 2>/dev/null; then
    echo '{"impl": "transformers", "skipped": "set OMNIRL_BENCH_PYTHON to a python with torch + transformers"}'
    exit 0
fi
"$py" - <<'PY'
import json, os, time
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

cuda = torch.cuda.is_available()
small = os.environ.get("OMNIRL_BENCH", "small" if not cuda else "7b") != "7b"
dev, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
if small:
    cfg = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=688, vocab_size=8192)
    prompt, new, train = (int(os.environ.get(k, d)) for k, d in
                          (("OMNIRL_BENCH_PROMPT", 128), ("OMNIRL_BENCH_NEW", 32), ("OMNIRL_BENCH_TRAIN", 512)))
else:
    cfg = dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
               intermediate_size=18944, vocab_size=152064)
    prompt, new, train = (int(os.environ.get(k, d)) for k, d in
                          (("OMNIRL_BENCH_PROMPT", 512), ("OMNIRL_BENCH_NEW", 128), ("OMNIRL_BENCH_TRAIN", 4096)))
torch.manual_seed(0)
model = Qwen2ForCausalLM(Qwen2Config(rope_theta=1e6, max_position_embeddings=32768, tie_word_embeddings=False,
                                     attn_implementation="sdpa", **cfg)).to(dev, dtype).eval()
model.generation_config.eos_token_id = None
model.generation_config.pad_token_id = 0
sync = torch.cuda.synchronize if cuda else (lambda: None)
print(json.dumps({"impl": "transformers", "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "shape": dict(cfg, dtype=str(dtype), device=dev)}))

def gen(ids, n):
    with torch.no_grad():
        return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                              do_sample=False)

for b in [int(x) for x in os.environ.get("OMNIRL_BENCH_BATCHES", "1,16,64").split(",")]:
    ids = torch.randint(0, 8000, (b, prompt), device=dev)
    gen(ids[:1], 2)
    sync(); t0 = time.time(); gen(ids, 1); sync(); prefill = time.time() - t0
    sync(); t0 = time.time(); gen(ids, new + 1); sync(); decode = max(time.time() - t0 - prefill, 1e-9)
    print(json.dumps({"impl": "transformers", "batch": b, "prompt": prompt, "new_tokens": new,
                      "prefill_tok_s": b * prompt / prefill, "decode_tok_s": b * new / decode,
                      "decode_step_ms": decode / new * 1e3}))

model.train()
for p in model.parameters():
    p.requires_grad_(False)
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.enable_input_require_grads()
ids = torch.arange(train, device=dev).unsqueeze(0) * 104729 % cfg["vocab_size"]
start = train // 2

def step():
    out = model(ids, logits_to_keep=train - start + 1)
    lp = out.logits[0, :-1].float().log_softmax(-1).gather(1, ids[0, start:].unsqueeze(1))
    (-lp.mean()).backward()

step(); sync(); t0 = time.time()
for _ in range(3):
    step()
sync()
print(json.dumps({"impl": "transformers", "train_tokens": train, "fwd_bwd_tok_s": train / ((time.time() - t0) / 3),
                  "checkpointing": True}))
PY

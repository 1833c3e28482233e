//! Throughput benchmark of the thinker's LLM (ignored by default; `scripts/bench_model.sh` runs it
//! in release mode beside PyTorch + transformers with the same shapes).
//!
//! `OMNIRL_BENCH=7b` (default on CUDA): the 7B-shaped thinker, random init, bf16 on the GPU;
//! `OMNIRL_BENCH=small` (default on CPU): hidden 256, 4 layers, 4 / 2 heads, MLP 688, vocab 8192,
//! f32. Reports, as one JSON line per measurement: prefill and decode tokens/s at batch 1, 16 and
//! 64 (`OMNIRL_BENCH_BATCHES`), and forward+backward tokens/s with activation checkpointing and
//! LoRA r16 on every LLM linear (frozen base, chunked lm_head). Decode also reports the bytes read
//! per step (every LLM weight but the embedding table, plus the KV cache) and, with `OMNIRL_BENCH_HBM_GBPS` (the GPU's peak), the share of
//! that bandwidth roofline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use trainer::model::generate::{GenTiming, Prompt, SamplingParams, generate, generate_timed};
use trainer::model::logprobs::{TrainOptions, forward_backward};
use trainer::model::lora::LoraConfig;
use trainer::model::thinker::{MediaInput, Thinker};
use trainer::model::weights::Weights;
use trainer::model::{KeyLayout, Manifest, OmniThinkerConfig, QWEN25_OMNI_7B_THINKER_JSON, TensorRole};

fn config(small: bool) -> OmniThinkerConfig {
    let mut v: Value = serde_json::from_str(QWEN25_OMNI_7B_THINKER_JSON).unwrap();
    // The encoders are not benchmarked: keep them tiny in both shapes.
    v["vision_config"] = json!({"depth": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 32,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
        "fullatt_block_indexes": [0], "out_hidden_size": v["text_config"]["hidden_size"], "in_channels": 3});
    v["audio_config"] = json!({"d_model": 32, "encoder_layers": 1, "encoder_attention_heads": 2,
        "encoder_ffn_dim": 32, "num_mel_bins": 128, "max_source_positions": 1500, "n_window": 100,
        "output_dim": v["text_config"]["hidden_size"]});
    if small {
        let t = &mut v["text_config"];
        t["hidden_size"] = json!(256);
        t["num_hidden_layers"] = json!(4);
        t["num_attention_heads"] = json!(4);
        t["num_key_value_heads"] = json!(2);
        t["intermediate_size"] = json!(688);
        t["vocab_size"] = json!(8192);
        t["rope_scaling"]["mrope_section"] = json!([8, 12, 12]);
        v["vision_config"]["out_hidden_size"] = json!(256);
        v["audio_config"]["output_dim"] = json!(256);
        for k in [
            "audio_token_index",
            "image_token_index",
            "video_token_index",
            "audio_start_token_id",
            "audio_end_token_id",
            "vision_start_token_id",
            "vision_end_token_id",
            "vision_token_id",
        ] {
            v[k] = json!(v[k].as_u64().unwrap() - 151_643 + 8000);
        }
        v["eos_token_id"] = json!(8002);
        v["pad_token_id"] = json!(8000);
    }
    let cfg = OmniThinkerConfig::from_json_str(&v.to_string()).unwrap();
    assert_eq!(cfg.validate(), vec![]);
    cfg
}

fn random_thinker(cfg: OmniThinkerConfig, kind: Kind, device: Device) -> Thinker {
    tch::manual_seed(0);
    let mut map = BTreeMap::new();
    for spec in Manifest::new(&cfg, KeyLayout::Bare).tensors {
        let shape: Vec<i64> = spec.shape.iter().map(|&d| d as i64).collect();
        let t = match spec.role {
            TensorRole::Norm => Tensor::ones(&shape, (kind, device)),
            TensorRole::Bias => Tensor::zeros(&shape, (kind, device)),
            TensorRole::Weight => Tensor::randn(&shape, (kind, device)) * 0.02,
        };
        map.insert(spec.name, t);
    }
    Thinker::new(cfg, Weights::from_map(map, kind, device)).unwrap()
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn env_usize(k: &str, default: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
#[ignore = "benchmark: run scripts/bench_model.sh"]
fn bench_llm_throughput() {
    let device = Device::cuda_if_available();
    let small = std::env::var("OMNIRL_BENCH").map_or(device == Device::Cpu, |v| v != "7b");
    let kind = if device == Device::Cpu { Kind::Float } else { Kind::BFloat16 };
    let cfg = config(small);
    let (prompt, new, train_len) = if small {
        (env_usize("OMNIRL_BENCH_PROMPT", 128), env_usize("OMNIRL_BENCH_NEW", 32), env_usize("OMNIRL_BENCH_TRAIN", 512))
    } else {
        (
            env_usize("OMNIRL_BENCH_PROMPT", 512),
            env_usize("OMNIRL_BENCH_NEW", 128),
            env_usize("OMNIRL_BENCH_TRAIN", 4096),
        )
    };
    let batches: Vec<usize> = std::env::var("OMNIRL_BENCH_BATCHES")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .filter_map(|b| b.parse().ok())
        .collect();
    let t = cfg.text();
    let shape = json!({"config": if small {"small"} else {"7b"}, "hidden": t.hidden_size, "layers": t.num_hidden_layers,
        "heads": t.num_attention_heads, "kv_heads": t.num_key_value_heads, "mlp": t.intermediate_size,
        "vocab": t.vocab_size, "dtype": format!("{kind:?}"), "device": format!("{device:?}"),
        "threads": tch::get_num_threads()});
    println!(); // libtest prints "test ... " before the first line
    println!("{}", json!({"impl": "omnirl", "shape": shape}));
    let mut th = random_thinker(cfg.clone(), kind, device);
    let vocab = t.vocab_size as i64;
    let llm_params: i64 = th
        .weights
        .names()
        .filter(|n| (n.starts_with("model.") && *n != "model.embed_tokens.weight") || n.starts_with("lm_head"))
        .map(|n| th.weights.get(n).unwrap().numel() as i64)
        .sum();
    let elt = if kind == Kind::Float { 4 } else { 2 };
    let kv_per_token = 2 * t.num_hidden_layers * t.num_key_value_heads * th.cfg.head_dim() * elt;
    let media = MediaInput::default();
    for &b in &batches {
        let ids: Vec<Vec<u32>> =
            (0..b).map(|r| (0..prompt).map(|i| ((r * 7919 + i * 104_729) % 8000) as u32).collect()).collect();
        let prompts: Vec<Prompt<'_>> = ids.iter().map(|i| Prompt { ids: i, media: &media, seed: None }).collect();
        let p = |n| SamplingParams { greedy: true, ignore_eos: true, max_new_tokens: n, ..SamplingParams::default() };
        generate(&th, &prompts[..1], &p(2)).unwrap(); // warm-up
        // Best of 3: the CI machines are shared.
        let mut best = GenTiming { prefill_s: f64::MAX, decode_s: f64::MAX, ..GenTiming::default() };
        for _ in 0..3 {
            let (_, t) = generate_timed(&th, &prompts, &p(new + 1)).unwrap();
            best.prefill_s = best.prefill_s.min(t.prefill_s);
            best.decode_s = best.decode_s.min(t.decode_s);
            best.decode_steps = t.decode_steps;
        }
        sync(device);
        let (prefill, decode) = (best.prefill_s, best.decode_s.max(1e-9));
        let new = best.decode_steps;
        let step = decode / new as f64;
        let ctx = prompt + new / 2;
        let bytes = (llm_params * elt as i64) as f64 + (b * ctx * kv_per_token) as f64;
        let gbps = bytes / step / 1e9;
        let roofline =
            std::env::var("OMNIRL_BENCH_HBM_GBPS").ok().and_then(|v| v.parse::<f64>().ok()).map(|peak| gbps / peak);
        println!(
            "{}",
            json!({"impl": "omnirl", "batch": b, "prompt": prompt, "new_tokens": new,
            "prefill_tok_s": (b * prompt) as f64 / prefill, "decode_tok_s": (b * new) as f64 / decode,
            "decode_step_ms": step * 1e3, "decode_gb_per_s": gbps, "hbm_roofline_share": roofline})
        );
    }
    th.add_lora(&LoraConfig { rank: 16, alpha: 32.0, ..LoraConfig::default() }).unwrap();
    let ids: Vec<u32> = (0..train_len).map(|i| ((i * 104_729) % vocab as usize) as u32).collect();
    let start = train_len / 2;
    let opts = TrainOptions { chunk_tokens: 1024, checkpoint: true };
    let mut loss = |_: usize, lp: &Tensor, _: &Tensor| Ok(lp.sum(Kind::Float) * (-1.0 / (train_len - start) as f64));
    forward_backward(&th, &ids, &media, start, opts, &mut loss).unwrap(); // warm-up
    sync(device);
    let t0 = Instant::now();
    let reps = 3;
    for _ in 0..reps {
        forward_backward(&th, &ids, &media, start, opts, &mut loss).unwrap();
    }
    sync(device);
    let secs = t0.elapsed().as_secs_f64() / reps as f64;
    println!(
        "{}",
        json!({"impl": "omnirl", "train_tokens": train_len, "fwd_bwd_tok_s": train_len as f64 / secs,
        "checkpointing": true, "lora_rank": 16})
    );
}

//! Loading and saving, LoRA, the training forward (chunking, activation checkpointing) and batched
//! sampling on the tiny fixture thinker; bad inputs are errors, never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod model_common;

use model_common::{cases, devices, fixtures, ids, load, media};
use tch::{Device, Kind, Tensor};
use trainer::model::generate::{Finish, Prompt, SamplingParams, generate};
use trainer::model::logprobs::{TrainOptions, TrainSeq, forward_backward, forward_backward_packed, score};
use trainer::model::lora::LoraConfig;
use trainer::model::thinker::{MediaInput, Thinker, Visual};
use trainer::model::weights::{LoadOptions, Weights};
use trainer::model::{KeyLayout, OmniThinkerConfig};

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn saved_checkpoints_load_back_identically_in_every_layout() {
    let th = load(Device::Cpu);
    let c = cases();
    let (ids, m) = (ids(&c, "image"), media(&c, "image"));
    let want = th.logits(&ids, &m).unwrap();
    let thinker_only = OmniThinkerConfig::Thinker(th.cfg.thinker().clone());
    for (layout, cfg, shard) in
        [(KeyLayout::Bare, &thinker_only, 200_000), (KeyLayout::ThinkerPrefixed, &th.cfg, u64::MAX)]
    {
        let dir = tempfile::tempdir().unwrap();
        let files = th.weights.save(dir.path(), cfg, layout, shard).unwrap();
        assert_eq!(files.len() > 1, shard < u64::MAX, "{layout:?}");
        let back = Thinker::load(dir.path(), LoadOptions::default()).unwrap();
        assert_eq!(back.weights.layout, layout);
        assert_eq!(max_diff(&back.logits(&ids, &m).unwrap(), &want), 0.0, "{layout:?}");
        if layout == KeyLayout::Bare && std::env::var_os("OMNIRL_KEEP_SAVED").is_some() {
            // For `scripts/make_model_fixtures.py verify DIR` (transformers loads our output).
            let keep = std::env::temp_dir().join("omnirl-saved-thinker");
            th.weights.save(&keep, cfg, layout, shard).unwrap();
            println!("kept {}", keep.display());
        }
    }
    // bf16 on request: on CPU the values are rounded to bf16 and computed in f32; on CUDA in bf16.
    let dev = if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu };
    let bf = Thinker::load(&fixtures().join("tiny"), LoadOptions { dtype: Some(Kind::BFloat16), device: dev }).unwrap();
    assert_eq!(bf.kind(), if dev == Device::Cpu { Kind::Float } else { Kind::BFloat16 });
    let w = bf.weights.get("model.norm.weight").unwrap();
    assert_eq!(max_diff(&w, &w.to_kind(Kind::BFloat16).to_kind(w.kind())), 0.0);
    let d = max_diff(&bf.logits(&ids, &m).unwrap().to_device(Device::Cpu), &want);
    assert!(d > 0.0 && d < 0.5, "bf16 logits drift {d}");
}

#[test]
fn damaged_checkpoints_are_clear_errors() {
    let th = load(Device::Cpu);
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = std::collections::BTreeMap::new();
    for name in th.weights.names() {
        let t = th.weights.get(name).unwrap();
        match name {
            "model.norm.weight" => tensors.insert(name.to_string(), Tensor::ones([7], (Kind::Float, Device::Cpu))),
            "visual.merger.ln_q.weight" => None,
            _ => tensors.insert(name.to_string(), t),
        };
    }
    let w = Weights::from_map(tensors, Kind::Float, Device::Cpu);
    w.save(dir.path(), &th.cfg, KeyLayout::ThinkerPrefixed, u64::MAX).unwrap();
    let err = Thinker::load(dir.path(), LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("missing tensor `thinker.visual.merger.ln_q.weight`"), "{err}");
    assert!(
        err.contains("`thinker.model.norm.weight` in model.safetensors has shape [7], the config implies [48]"),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("tiny/config.json"), empty.path().join("config.json")).unwrap();
    let err = Thinker::load(empty.path(), LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("neither model.safetensors.index.json nor model.safetensors"), "{err}");
}

#[test]
fn lora_starts_as_the_base_switches_off_and_merges() {
    let c = cases();
    let (ids, m) = (ids(&c, "text"), MediaInput::default());
    let mut th = load(Device::Cpu);
    let base = th.logits(&ids, &m).unwrap();
    let bad = LoraConfig { targets: vec!["qkv".into()], ..LoraConfig::default() };
    assert!(th.add_lora(&bad).is_err());
    th.add_lora(&LoraConfig { rank: 4, alpha: 8.0, ..LoraConfig::default() }).unwrap();
    assert_eq!(max_diff(&th.logits(&ids, &m).unwrap(), &base), 0.0, "B = 0 at init");
    assert_eq!(th.trainable().len(), 2 * 7 * 2);
    tch::no_grad(|| {
        for (_, t) in th.lora_tensors() {
            let mut t = t;
            let _ = t.uniform_(-0.2, 0.2);
        }
    });
    let adapted = th.logits(&ids, &m).unwrap();
    assert!(max_diff(&adapted, &base) > 1e-3);
    th.lora.set(false);
    assert_eq!(max_diff(&th.logits(&ids, &m).unwrap(), &base), 0.0, "adapters off = reference model");
    th.lora.set(true);
    let merged_copy = th.merged_weights().unwrap();
    th.merge_lora().unwrap();
    assert!(th.lora_tensors().is_empty());
    assert!(max_diff(&th.logits(&ids, &m).unwrap(), &adapted) < 1e-4);
    // One owner per tensor: the merge is in place, so the name map the checkpoint is saved
    // from holds the merged values too, equal to the non-mutating merged copy.
    let layers = &th.text.layers;
    for (name, in_layer) in [
        ("model.layers.0.self_attn.q_proj.weight", &layers[0].self_attn.q_proj.w),
        ("model.layers.1.mlp.down_proj.weight", &layers[1].mlp.down_proj.w),
    ] {
        let owned = th.weights.get(name).unwrap();
        assert_eq!(max_diff(&owned, &merged_copy.get(name).unwrap()), 0.0, "{name}");
        assert_eq!(max_diff(&owned, in_layer), 0.0, "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    th.weights.save(dir.path(), &th.cfg, KeyLayout::ThinkerPrefixed, u64::MAX).unwrap();
    let back = Thinker::load(dir.path(), LoadOptions::default()).unwrap();
    assert!(
        max_diff(&back.logits(&ids, &m).unwrap(), &adapted) < 1e-4,
        "a saved merged model keeps the adapters' effect"
    );
}

#[test]
fn training_forward_chunks_and_checkpointing_agree() {
    let c = cases();
    let (ids, m) = (ids(&c, "video_audio"), media(&c, "video_audio"));
    let mut th = load(Device::Cpu);
    th.add_lora(&LoraConfig { rank: 2, alpha: 4.0, seed: 3, ..LoraConfig::default() }).unwrap();
    tch::no_grad(|| {
        for (_, t) in th.lora_tensors() {
            let mut t = t;
            let _ = t.uniform_(-0.1, 0.1);
        }
    });
    let start = 40;
    let s1 = score(&th, &ids, &m, start, 1000).unwrap();
    let s2 = score(&th, &ids, &m, start, 7).unwrap();
    assert_eq!(s1.logprobs.size(), [ids.len() as i64 - start as i64]);
    // The chunk size changes only the shape of the lm_head matmul, which MKL may block and sum in
    // another order: a few ulps of values up to ~8 (ulp 4.8e-7, 1-2 ulps seen); a misaligned chunk
    // would be off by O(1).
    assert!(max_diff(&s1.logprobs, &s2.logprobs) < 1e-4 && max_diff(&s1.entropies, &s2.entropies) < 1e-4);
    let mut grads = Vec::new();
    for checkpoint in [false, true] {
        for t in th.trainable() {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let n = (ids.len() - start) as f64;
        let mut loss =
            |_: usize, lp: &Tensor, ent: &Tensor| Ok(-(lp.sum(Kind::Float) + ent.sum(Kind::Float) * 0.1) / n);
        let out =
            forward_backward(&th, &ids, &m, start, TrainOptions { chunk_tokens: 5, checkpoint }, &mut loss).unwrap();
        // Chunks of 5 vs one chunk, as above.
        assert!(max_diff(&out.logprobs, &s1.logprobs) < 1e-4);
        let want_loss = -(s1.logprobs.sum(Kind::Double).double_value(&[])
            + 0.1 * s1.entropies.sum(Kind::Double).double_value(&[]))
            / n;
        assert!((out.loss - want_loss).abs() < 1e-4, "{} vs {want_loss}", out.loss);
        grads.push(th.trainable().iter().map(|t| t.grad().copy()).collect::<Vec<_>>());
    }
    let norm: f64 = grads[0].iter().map(|g| g.square().sum(Kind::Double).double_value(&[])).sum();
    assert!(norm > 0.0);
    for (a, b) in grads[0].iter().zip(&grads[1]) {
        assert!(max_diff(a, b) < 1e-5, "checkpointed gradients differ");
    }
}

/// Sequences packed into one training forward give each sequence's own log-probs and the same
/// gradients (encoders and LLM) as one forward per sequence, with and without checkpointing; the
/// loss sees offsets into the concatenated spans (a per-position weight checks the alignment).
#[test]
fn packed_training_forward_equals_one_sequence_at_a_time() {
    let c = cases();
    for dev in devices() {
        let mut th = load(dev);
        assert!(
            th.set_trainable(&["model.", "lm_head.", "visual.blocks.", "visual.merger.", "audio_tower.layers."], true)
                > 0
        );
        th.freeze_encoders(false);
        let names = ["image", "video_audio", "text", "audio"];
        let data: Vec<(Vec<u32>, MediaInput)> = names.iter().map(|n| (ids(&c, n), media(&c, n))).collect();
        let seqs: Vec<TrainSeq<'_>> =
            data.iter().zip([10usize, 40, 3, 12]).map(|((ids, media), start)| TrainSeq { ids, media, start }).collect();
        let total: usize = seqs.iter().map(|s| s.ids.len() - s.start).sum();
        let w = Tensor::linspace(0.5, 1.5, total as i64, (Kind::Float, dev));
        let run = |packed: bool, checkpoint: bool| -> (Tensor, Vec<Tensor>) {
            for t in th.trainable() {
                let mut g = t.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
            let opts = TrainOptions { chunk_tokens: 7, checkpoint };
            let lps = if packed {
                let mut loss = |o: usize, lp: &Tensor, _: &Tensor| {
                    Ok(-(lp * w.narrow(0, o as i64, lp.size()[0])).sum(Kind::Float))
                };
                forward_backward_packed(&th, &seqs, opts, &mut loss).unwrap().logprobs
            } else {
                let mut base = 0;
                let mut parts = Vec::new();
                for s in &seqs {
                    let at = base as i64;
                    let mut loss = |o: usize, lp: &Tensor, _: &Tensor| {
                        Ok(-(lp * w.narrow(0, at + o as i64, lp.size()[0])).sum(Kind::Float))
                    };
                    parts.push(forward_backward(&th, s.ids, s.media, s.start, opts, &mut loss).unwrap().logprobs);
                    base += s.ids.len() - s.start;
                }
                Tensor::cat(&parts, 0)
            };
            (lps, th.weights.trainable().iter().map(|(_, t)| t.grad().copy()).collect())
        };
        let (want_lp, want_g) = run(false, false);
        assert_eq!(want_lp.size(), [total as i64]);
        for checkpoint in [false, true] {
            let (lp, g) = run(true, checkpoint);
            assert!(max_diff(&lp, &want_lp) < 1e-4, "{dev:?}: log-probs differ by {}", max_diff(&lp, &want_lp));
            for (a, b) in g.iter().zip(&want_g) {
                let scale = b.abs().max().double_value(&[]).max(1e-3);
                assert!(max_diff(a, b) / scale < 1e-4, "{dev:?} checkpoint {checkpoint}: gradients differ");
            }
        }
        let names = th.weights.trainable();
        let idle: Vec<&str> = names
            .iter()
            .zip(&want_g)
            .filter(|(_, g)| g.abs().sum(Kind::Double).double_value(&[]) == 0.0)
            .map(|((n, _), _)| *n)
            .collect();
        assert!(idle.is_empty(), "{dev:?}: no gradient for {idle:?}");
    }
}

#[test]
fn full_fine_tuning_and_unfrozen_encoders_get_gradients() {
    let c = cases();
    let (ids, m) = (ids(&c, "image"), media(&c, "image"));
    let mut th = load(Device::Cpu);
    assert!(th.set_trainable(&["model.layers.1.", "visual.merger."], true) > 0);
    th.freeze_encoders(false);
    let mut grads = Vec::new();
    for checkpoint in [false, true] {
        for t in th.trainable() {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let mut loss = |_: usize, lp: &Tensor, _: &Tensor| Ok(-lp.mean(Kind::Float));
        forward_backward(&th, &ids, &m, 10, TrainOptions { chunk_tokens: 4, checkpoint }, &mut loss).unwrap();
        let named: Vec<(String, Tensor)> =
            th.weights.trainable().into_iter().map(|(n, t)| (n.to_string(), t.grad().copy())).collect();
        grads.push(named);
    }
    for ((name, a), (_, b)) in grads[0].iter().zip(&grads[1]) {
        assert!(a.abs().sum(Kind::Double).double_value(&[]) > 0.0, "{name} got no gradient");
        assert!(max_diff(a, b) < 1e-5, "{name}");
    }
    assert!(grads[0].iter().any(|(n, _)| n.starts_with("visual.merger.")));
}

#[test]
fn batched_sampling_is_batch_invariant_seeded_and_consistent() {
    let c = cases();
    let th = load(Device::Cpu);
    let names = ["text", "image", "audio", "video_audio"];
    let data: Vec<(Vec<u32>, MediaInput)> = names.iter().map(|n| (ids(&c, n), media(&c, n))).collect();
    let prompts: Vec<Prompt<'_>> =
        data.iter().enumerate().map(|(i, (ids, m))| Prompt { ids, media: m, seed: Some(100 + i as u64) }).collect();
    for params in [
        SamplingParams { greedy: true, max_new_tokens: 6, ignore_eos: true, ..SamplingParams::default() },
        SamplingParams {
            temperature: 0.7,
            top_k: Some(50),
            top_p: 0.9,
            max_new_tokens: 6,
            entropies: true,
            ..SamplingParams::default()
        },
    ] {
        let batch = generate(&th, &prompts, &params).unwrap();
        for (i, p) in prompts.iter().enumerate() {
            let single = generate(&th, &[*p], &params).unwrap();
            assert_eq!(single[0].ids, batch[i].ids, "{} {:?}", names[i], params.greedy);
            for (a, b) in single[0].logprobs.iter().zip(&batch[i].logprobs) {
                assert!((a - b).abs() < 1e-4);
            }
        }
        if !params.greedy {
            let ents = batch[0].entropies.as_ref().unwrap();
            assert_eq!(ents.len(), batch[0].ids.len());
            // Log-prob = log_softmax(logits / T) renormalised over the kept set: never above the
            // untruncated one, and <= 0.
            let full: Vec<u32> = data[0].0.iter().chain(&batch[0].ids).copied().collect();
            let logits = th.logits(&full, &data[0].1).unwrap();
            let n0 = data[0].0.len() as i64;
            for (k, (&tok, &lp)) in batch[0].ids.iter().zip(&batch[0].logprobs).enumerate() {
                let row = logits.get(n0 - 1 + k as i64).divide_scalar(0.7).log_softmax(-1, Kind::Float);
                let untruncated = row.double_value(&[i64::from(tok)]);
                assert!(lp as f64 >= untruncated - 1e-5 && lp <= 0.0, "{lp} vs {untruncated}");
            }
            // Another seed, other tokens.
            let other = Prompt { seed: Some(7), ..prompts[0] };
            assert_ne!(generate(&th, &[other], &params).unwrap()[0].ids, batch[0].ids);
        }
    }
    // top-k 1 sampling is greedy; a stop token ends a row.
    let greedy = SamplingParams { greedy: true, max_new_tokens: 4, ignore_eos: true, ..SamplingParams::default() };
    let g = generate(&th, &prompts[..1], &greedy).unwrap();
    let k1 = SamplingParams { greedy: false, top_k: Some(1), ..greedy.clone() };
    assert_eq!(generate(&th, &prompts[..1], &k1).unwrap()[0].ids, g[0].ids);
    let k = (1..g[0].ids.len()).find(|&k| !g[0].ids[..k].contains(&g[0].ids[k])).unwrap();
    let stop = SamplingParams { stop: vec![g[0].ids[k]], ignore_eos: false, ..greedy };
    let s = generate(&th, &prompts[..1], &stop).unwrap();
    assert_eq!((s[0].ids.len(), s[0].finish), (k + 1, Finish::Stop));
}

/// `old_logprobs: rollout` rests on this: the generation's policy scores of each sampled token
/// (temperature 1, untruncated, whole vocabulary) are what the learner's scoring pass computes
/// over the finished sequence, for every row of a padded batch, whatever the sampling settings.
#[test]
fn rollout_policy_scores_equal_the_scoring_pass() {
    let c = cases();
    let th = load(Device::Cpu);
    let names = ["text", "image", "audio", "video_audio"];
    let data: Vec<(Vec<u32>, MediaInput)> = names.iter().map(|n| (ids(&c, n), media(&c, n))).collect();
    let prompts: Vec<Prompt<'_>> =
        data.iter().enumerate().map(|(i, (ids, m))| Prompt { ids, media: m, seed: Some(5 + i as u64) }).collect();
    let params = SamplingParams {
        temperature: 0.7,
        top_k: Some(50),
        top_p: 0.9,
        max_new_tokens: 6,
        ignore_eos: true,
        policy_scores: true,
        vocab_limit: Some(th.vocab_size() - 3),
        ..SamplingParams::default()
    };
    let batch = generate(&th, &prompts, &params).unwrap();
    for (i, (g, (prompt, m))) in batch.iter().zip(&data).enumerate() {
        let (lps, ents) = (g.policy_logprobs.as_ref().unwrap(), g.policy_entropies.as_ref().unwrap());
        assert_eq!((lps.len(), ents.len()), (g.ids.len(), g.ids.len()));
        let full: Vec<u32> = prompt.iter().chain(&g.ids).copied().collect();
        let s = score(&th, &full, m, prompt.len(), 1024).unwrap();
        let (want_lp, want_h) =
            (Vec::<f32>::try_from(&s.logprobs).unwrap(), Vec::<f32>::try_from(&s.entropies).unwrap());
        for k in 0..g.ids.len() {
            assert!((lps[k] - want_lp[k]).abs() < 1e-4, "{} token {k}: {} vs {}", names[i], lps[k], want_lp[k]);
            assert!((ents[k] - want_h[k]).abs() < 1e-4, "{} token {k}: {} vs {}", names[i], ents[k], want_h[k]);
        }
    }
    // Not asked for, not computed.
    let plain = generate(&th, &prompts[..1], &SamplingParams { policy_scores: false, ..params }).unwrap();
    assert!(plain[0].policy_logprobs.is_none() && plain[0].policy_entropies.is_none());
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let c = cases();
    let th = load(Device::Cpu);
    let (ids, m) = (ids(&c, "image"), media(&c, "image"));
    let mut short = m.clone();
    short.images[0].pixels = short.images[0].pixels.slice(0, 100).expect("100 values");
    assert!(th.logits(&ids, &short).is_err());
    let mut wrong_grid = m.clone();
    wrong_grid.images[0].grid_thw = [1, 4, 10];
    assert!(th.logits(&ids, &wrong_grid).is_err());
    let odd = MediaInput { images: vec![Visual::values(vec![0.0; 384 * 9], [1, 3, 3])], ..m.clone() };
    assert!(th.logits(&ids, &odd).is_err());
    assert!(th.logits(&ids, &MediaInput::default()).is_err(), "placeholders without media");
    assert!(th.logits(&[1, 2, 9999], &MediaInput::default()).is_err());
    assert!(th.logits(&[], &MediaInput::default()).is_err());
    assert!(score(&th, &ids, &m, 0, 8).is_err());
    assert!(score(&th, &ids, &m, ids.len(), 8).is_err());
    let p = [Prompt { ids: &ids, media: &m, seed: None }];
    assert!(generate(&th, &p, &SamplingParams { temperature: 0.0, ..SamplingParams::default() }).is_err());
    assert!(generate(&th, &p, &SamplingParams { top_p: 0.0, ..SamplingParams::default() }).is_err());
    assert!(generate(&th, &[Prompt { ids: &[], media: &m, seed: None }], &SamplingParams::default()).is_err());
}

#[test]
fn the_thinker_is_a_rollout_policy() {
    use rollout::episode::MediaItem;
    use rollout::media::{ModelInputs, VisionInputs};
    use rollout::policy::{Context, ContextInfo, Policy, Sampling};
    use std::sync::Arc;
    use trainer::model::policy::ThinkerPolicy;
    let c = cases();
    let (ids, m) = (ids(&c, "image"), media(&c, "image"));
    let img = &m.images[0];
    let inputs = ModelInputs {
        images: Some(VisionInputs { pixels: img.pixels.clone(), grid_thw: vec![img.grid_thw] }),
        ..ModelInputs::default()
    };
    let item = Arc::new(MediaItem {
        layout: rollout::chat::Part::Image { grid_thw: img.grid_thw },
        inputs: Some(Arc::new(inputs)),
    });
    let spec = model_common::episode_spec();
    let media = [item];
    let info = ContextInfo { episode: 0, sample: 0, copy: 0, step: 1, max_steps: 3, spec: &spec, history: &[] };
    let ctx = Context { prompt_ids: &ids, media: &media, info };
    let mut thinker = load(Device::Cpu);
    let mut policy = ThinkerPolicy::new(&mut thinker, None, 0);
    let greedy = Sampling { temperature: 0.0, top_k: None, max_new_tokens: 8, seed: 1, ..Sampling::train() };
    let out = policy.generate(&[ctx, ctx], &greedy).unwrap();
    let want: Vec<u32> = model_common::vec_i64(&c["image.greedy"]).into_iter().map(|x| x as u32).collect();
    assert_eq!(out[0].ids, want);
    assert_eq!(out[1].ids, want);
    assert_eq!(out[0].entropies.as_ref().map(Vec::len), Some(8));
    // Sampling with a vocabulary limit never returns ids at or above it.
    policy.vocab_limit = Some(300);
    let s = policy.generate(&[ctx], &Sampling { max_new_tokens: 16, ..Sampling::train() }).unwrap();
    assert!(s[0].ids.iter().all(|&t| t < 300), "{:?}", s[0].ids);
}

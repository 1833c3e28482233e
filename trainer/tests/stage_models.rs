//! A stage's model as `omnirl train` loads, trains and saves it (`run::model`), on the tiny
//! fixture thinker:
//! * LoRA results save in PEFT's layout (`adapter_config.json`, `adapter_model.safetensors` with
//!   PEFT names, the base weights untouched) or merged, and both load back as the trained model;
//! * `kl_coef > 0` without adapters keeps a frozen copy of the trained weights as the reference;
//! * the dry run's memory plan counts exactly the bytes training allocates (weights, gradients,
//!   master weights, AdamW state, the reference copy; ZeRO-1 shards per rank);
//! * one SFT step in fp32 on the CPU, the same step requested in bf16 on the CPU (the documented
//!   fallback: f32 compute on weights rounded to bf16), and in bf16 with fp32 master weights on
//!   CUDA where a GPU exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod learner_support;

use learner_support::*;
use rollout::episode::{ByteTokenizer, PromptEncoder};
use std::path::Path;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};
use trainer::checkpoint::tensor_io::read_safetensors;
use trainer::dist::zero1::Zero1;
use trainer::learner::LocalSteps;
use trainer::learner::optim::AdamWConfig;
use trainer::learner::rows::SftRow;
use trainer::learner::thinker::TrainableParts;
use trainer::learner::{AdamW, RlLearner, SftLearner, SftOptions, TrainablePolicy};
use trainer::model::lora::LoraConfig;
use trainer::model::thinker::MediaInput;
use trainer::plan::memory::MemoryBreakdown;
use trainer::recipe::resolved::{Optimizer, ResolvedStage};
use trainer::recipe::{AlgorithmConfig, Dtype, LossAggregation};
use trainer::run::model::{Loading, Model};

fn tiny() -> std::path::PathBuf {
    fixtures().join("tiny")
}

fn encoder() -> Arc<dyn PromptEncoder> {
    Arc::new(ByteTokenizer)
}

fn load(how: &Loading) -> Model {
    Model::load(&tiny(), how, encoder(), None).unwrap()
}

fn frozen() -> TrainableParts {
    TrainableParts { llm: false, vision: false, audio: false }
}

fn logits(model: &Model) -> Tensor {
    let (ids, media) = image_case();
    tch::no_grad(|| model.thinker().thinker.logits(&ids, &media)).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    read_safetensors(path, |n, t| {
        out.push((n.to_owned(), t));
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn lora_results_save_as_peft_adapters_or_merged_and_load_back_as_trained() {
    let lora = LoraConfig { rank: 4, alpha: 8.0, seed: 3, ..LoraConfig::default() };
    let how = Loading { lora: Some(lora), parts: frozen(), ..Loading::eval(Device::Cpu, Dtype::F32) };
    let model = load(&how);
    let base = logits(&model);
    // B starts at zero (the adapters change nothing); give it values as training would.
    let th = &model.thinker().thinker;
    tch::no_grad(|| {
        for (n, t) in th.lora_tensors() {
            if n.ends_with("lora_B.weight") {
                let mut t = t;
                t.copy_(&(Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.05));
            }
        }
    });
    let trained = logits(&model);
    assert!(max_diff(&trained, &base) > 1e-3, "the adapters must change the model");

    let dir = tempfile::tempdir().unwrap();
    let (peft, merged) = (dir.path().join("peft"), dir.path().join("merged"));
    model.save_result(&peft, false).unwrap();
    model.save_result(&merged, true).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(peft.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(
        (cfg["peft_type"].as_str(), cfg["r"].as_u64(), cfg["lora_alpha"].as_f64()),
        (Some("LORA"), Some(4), Some(8.0))
    );
    assert_eq!(cfg["target_modules"].as_array().unwrap().len(), 7);
    let adapters = tensors(&peft.join("adapter_model.safetensors"));
    // 2 layers x 7 linears x (A, B).
    assert_eq!(adapters.len(), 28);
    let a =
        adapters.iter().find(|(n, _)| n == "base_model.model.thinker.model.layers.0.self_attn.q_proj.lora_A.weight");
    assert_eq!(a.map(|(_, t)| t.size()), Some(vec![4, 48]));
    // The PEFT directory keeps the base weights as loaded; the merged one has them folded in.
    let q = "thinker.model.layers.0.self_attn.q_proj.weight";
    let stored = |d: &Path| tensors(&d.join("model.safetensors")).into_iter().find(|(n, _)| n == q).unwrap().1;
    let original = th.weights.get("model.layers.0.self_attn.q_proj.weight").unwrap();
    assert!(stored(&peft).equal(&original));
    assert!(max_diff(&stored(&merged), &original) > 1e-4);
    assert!(!merged.join("adapter_config.json").exists() && !merged.join("adapter_model.safetensors").exists());

    // Both load back as the trained model (adapters folded at load); f32 sums in another order
    // (x·W + s·x·A·B against x·(W + s·B·A)) stay within 1e-4 of logits of magnitude ~10.
    let eval = Loading::eval(Device::Cpu, Dtype::F32);
    for d in [&peft, &merged] {
        let back = Model::load(d, &eval, encoder(), None).unwrap();
        assert!(back.thinker().thinker.lora_tensors().is_empty());
        let diff = max_diff(&logits(&back), &trained);
        assert!(diff < 1e-4, "{}: logits differ by {diff}", d.display());
    }
}

#[test]
fn kl_without_adapters_keeps_a_frozen_copy_of_the_trained_weights() {
    let algorithm = AlgorithmConfig { kl_coef: 0.1, ..AlgorithmConfig::default() };
    let mut rng = trainer::learner::SplitMix64::new(5);
    let rows: Vec<_> = group_rows(&mut rng, "q", &[1.0, 0.0, 0.5], 500, TINY_EOS, 4)
        .into_iter()
        .map(|r| with_media(r, MediaInput::default()))
        .collect();
    // Without a reference the first step is refused.
    let plain = tiny_thinker(TrainableParts::rl());
    let err = RlLearner::new(&plain, &algorithm, &optimizer(1e-2), 10)
        .unwrap()
        .step(&plain, &rows, &mut LocalSteps)
        .unwrap_err();
    assert!(err.to_string().contains("reference"), "{err}");

    let how = Loading { reference_copy: true, parts: TrainableParts::rl(), ..Loading::eval(Device::Cpu, Dtype::F32) };
    let model = load(&how);
    let policy = model.thinker();
    let reference = policy.reference.as_ref().expect("a frozen copy");
    let name = "model.layers.0.mlp.up_proj.weight";
    let before = reference.weights.get(name).unwrap().copy();
    let mut learner = RlLearner::new(policy, &algorithm, &optimizer(1e-2), 10).unwrap();
    let first = learner.step(policy, &rows, &mut LocalSteps).unwrap();
    // Policy and reference are the same weights at the first step: KL 0 up to the rounding of
    // two forwards (the training one is chunked).
    assert!(first.kl_loss.abs() < 1e-6, "kl {}", first.kl_loss);
    let second = learner.step(policy, &rows, &mut LocalSteps).unwrap();
    assert!(second.kl_loss > 1e-6, "after an update the policy moved away: kl {}", second.kl_loss);
    assert!(reference.weights.get(name).unwrap().equal(&before), "the reference stays frozen");
    assert!(max_diff(&policy.thinker.weights.get(name).unwrap(), &before) > 0.0, "the policy trained");
}

/// The RL step with rows packed into forwards (`max_tokens_per_forward`) makes the update and
/// reports the statistics of one row per forward: scoring, reference and update passes alike.
#[test]
fn packed_rl_passes_equal_one_row_per_forward() {
    let mut rng = trainer::learner::SplitMix64::new(9);
    let rows: Vec<_> = group_rows(&mut rng, "q", &[1.0, 0.0, 0.5, 0.0], 500, TINY_EOS, 5)
        .into_iter()
        .map(|r| with_media(r, MediaInput::default()))
        .collect();
    let mut runs = Vec::new();
    for budget in [0, 60, 100_000] {
        let algorithm = AlgorithmConfig { kl_coef: 0.1, max_tokens_per_forward: budget, ..AlgorithmConfig::default() };
        let how =
            Loading { reference_copy: true, parts: TrainableParts::rl(), ..Loading::eval(Device::Cpu, Dtype::F32) };
        let mut model = load(&how);
        // Chunks of 4 scored positions: chunks straddle the packed rows' boundaries.
        model.thinker_mut().train.chunk_tokens = 4;
        let policy = model.thinker();
        // Adam with a large epsilon: a step is smooth in the gradient (at most lr/eps = 10 per
        // unit), so the rounding of another summation order cannot flip the sign of a near-zero
        // gradient's full-size step, on any CPU.
        let adam = Optimizer { eps: 1e-3, ..optimizer(1e-2) };
        let mut learner = RlLearner::new(policy, &algorithm, &adam, 10).unwrap();
        learner.step(policy, &rows, &mut LocalSteps).unwrap();
        let s = learner.step(policy, &rows, &mut LocalSteps).unwrap();
        let w = policy.thinker.weights.get("model.layers.0.mlp.up_proj.weight").unwrap().copy();
        runs.push((budget, [s.pg_loss, s.kl_loss, s.raw_entropy, s.entropy_loss], s.turn_entropies, w));
    }
    let (_, want, want_h, want_w) = &runs[0];
    assert!(want[1] > 1e-6, "the second step has a KL term: {want:?}");
    for (budget, got, h, w) in &runs[1..] {
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-3), "budget {budget}: {got:?} vs {want:?}");
        }
        for (a, b) in h.iter().zip(want_h) {
            assert!((a - b).abs() < 1e-4, "budget {budget}: turn entropies {h:?} vs {want_h:?}");
        }
        assert!(max_diff(w, want_w) < 1e-5, "budget {budget}: weights differ by {}", max_diff(w, want_w));
    }
}

/// Bytes of tensors.
fn bytes<'a>(ts: impl IntoIterator<Item = &'a Tensor>) -> u64 {
    ts.into_iter().map(|t| (t.numel() * t.kind().elt_size_in_bytes()) as u64).sum()
}

/// Master-weight and moment bytes of an optimizer's state.
fn state_bytes(state: &[(String, Tensor)]) -> (u64, u64) {
    let master = bytes(state.iter().filter(|(n, _)| n.starts_with("master.")).map(|(_, t)| t));
    (master, bytes(state.iter().map(|(_, t)| t)) - master)
}

/// The dry run's memory plan for one stage of `yaml` (`world` ranks).
fn plan(dir: &Path, yaml: &str, world: u32) -> (ResolvedStage, MemoryBreakdown) {
    let path = dir.join("plan.yaml");
    std::fs::write(&path, yaml).unwrap();
    let w = world.to_string();
    let env = move |k: &str| match k {
        "WORLD_SIZE" => Some(w.clone()),
        "RANK" | "LOCAL_RANK" => Some("0".into()),
        "MASTER_ADDR" => Some("127.0.0.1".into()),
        "MASTER_PORT" => Some("29500".into()),
        _ => None,
    };
    let dry = trainer::dry_run::run(&path, &[], &env);
    let errors: Vec<String> = dry.problems.iter().filter(|p| p.is_error()).map(|p| p.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let stage = dry.resolved_recipe.unwrap().stages.remove(0);
    (stage, dry.plan.stages[0].model.memory.unwrap())
}

fn rl_recipe(device: &str, dtype: &str, model: &str, zero1: bool) -> String {
    format!(
        "name: plan
distributed: {{device: {device}, shard_optimizer_state: {zero1}}}
stages:
  - kind: rl
    model: {{path: {tiny}, dtype: {dtype}, {model}}}
    data: {{train_files: [data/quickstart/rl.jsonl], media_root: data/quickstart}}
    algorithm: {{kl_coef: 0.1}}
",
        tiny = tiny().display()
    )
}

#[test]
fn the_memory_plan_counts_what_training_allocates() {
    std::env::set_current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // fp32 on the CPU, as `omnirl train` runs it: full LLM, the vision tower trained, a frozen
    // reference copy for the KL term, one backward for the gradients.
    let (stage, mem) = plan(
        dir.path(),
        &rl_recipe("cpu", "f32", "freeze_vision_encoder: false, freeze_audio_encoder: true", false),
        1,
    );
    let ResolvedStage::Rl(rl) = &stage else { panic!("rl") };
    let model = load(&Loading::train(&rl.model, Device::Cpu, true, 42));
    let tt = model.thinker();
    let params = tt.trainable_variables();
    let adam = AdamW::new(tt.trainable_variables(), AdamWConfig::from_recipe(&rl.optimizer, 10)).unwrap();
    let (ids, media) = image_case();
    let mut loss = |_: usize, lp: &Tensor, _: &Tensor| lp.f_sum(Kind::Float).map(|s| -s);
    tt.forward_backward(&ids, &media, ids.len() - 4, &mut loss).unwrap();
    let weights: Vec<Tensor> = tt.thinker.weights.names().map(|n| tt.thinker.weights.get(n).unwrap()).collect();
    let reference = tt.reference.as_ref().unwrap();
    let copied = reference.weights.names().map(|n| reference.weights.get(n).unwrap()).filter(|t| {
        let same = params.iter().any(|(_, p)| p.data_ptr() == t.data_ptr());
        !same && weights.iter().all(|w| w.data_ptr() != t.data_ptr())
    });
    let (master, optimizer) = state_bytes(&adam.state_tensors());
    let grads: Vec<Tensor> = params.iter().map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
    assert_eq!(grads.len(), params.len(), "every trained tensor got a gradient");
    let got = [bytes(&weights), bytes(copied.collect::<Vec<_>>().iter()), bytes(&grads), master, optimizer];
    assert_eq!(got, [mem.weights, mem.reference, mem.grads, mem.master, mem.optimizer]);
    assert!(mem.reference > 0 && mem.master == 0);

    // bf16 (the GPU layout; allocation only, no kernels): LoRA adapters in fp32, masters for
    // the bf16 tensors that train, gradients in each parameter's dtype; ZeRO-1 over 2 ranks
    // keeps the state of each rank's tensors only.
    let yaml =
        rl_recipe("cuda", "bf16", "lora: {rank: 4}, freeze_vision_encoder: false, freeze_audio_encoder: true", true);
    let (stage, mem) = plan(dir.path(), &yaml, 2);
    let ResolvedStage::Rl(rl) = &stage else { panic!("rl") };
    let how = Loading::train(&rl.model, Device::Cpu, true, 42);
    let mut tt = tiny_thinker(how.parts);
    let mut map = std::collections::BTreeMap::new();
    for n in tt.thinker.weights.names() {
        let t = tt.thinker.weights.get(n).unwrap();
        map.insert(n.to_string(), t.to_kind(Kind::BFloat16).set_requires_grad(t.requires_grad()));
    }
    let cfg = tt.thinker.cfg.clone();
    tt = trainer::learner::thinker::TrainableThinker::from_weights(
        cfg,
        trainer::model::weights::Weights::from_map(map, Kind::BFloat16, Device::Cpu),
        how.parts,
        tt.train,
    )
    .unwrap();
    tt.thinker.add_lora(how.lora.as_ref().unwrap()).unwrap();
    let params = tt.trainable_variables();
    let weights: Vec<Tensor> = tt.thinker.weights.names().map(|n| tt.thinker.weights.get(n).unwrap()).collect();
    let adapters: Vec<Tensor> = tt.thinker.lora_tensors().into_iter().map(|(_, t)| t).collect();
    let grads: u64 = params.iter().map(|(_, p)| (p.numel() * p.kind().elt_size_in_bytes()) as u64).sum();
    let config = AdamWConfig::from_recipe(&rl.optimizer, 10);
    let shards: Vec<(u64, u64)> = (0..2)
        .map(|r| state_bytes(&Zero1::new(tt.trainable_variables(), config, r, 2).unwrap().state_tensors()))
        .collect();
    let peak = shards.iter().copied().max_by_key(|(m, o)| m + o).unwrap();
    assert_eq!(
        [bytes(weights.iter().chain(&adapters)), mem.reference, grads, peak.0, peak.1],
        [mem.weights, 0, mem.grads, mem.master, mem.optimizer]
    );
    assert!(mem.master > 0 && shards[0] != shards[1]);
}

/// The image case as one SFT row (the last 4 tokens are the target).
fn sft_row() -> SftRow<MediaInput> {
    let (ids, media) = image_case();
    let cut = ids.len() - 4;
    SftRow::new(&ids[..cut], &ids[cut..], &[TINY_EOS], media)
}

/// One SFT step: its loss, the model, and how many fp32 master copies the optimizer keeps.
fn sft_step(how: &Loading) -> (f64, Model, usize) {
    let model = load(how);
    let tt = model.thinker();
    let options = SftOptions {
        per_device_batch_size: 1,
        gradient_accumulation_steps: 1,
        aggregation: LossAggregation::TokenMean,
    };
    let mut learner = SftLearner::new(tt, options, &optimizer(1e-2), 10).unwrap();
    let loss = learner.step(tt, &[sft_row()], &mut LocalSteps).unwrap().loss;
    let masters = learner.optimizer.state_tensors().iter().filter(|(n, _)| n.starts_with("master.")).count();
    (loss, model, masters)
}

#[test]
fn one_sft_step_in_fp32_on_the_cpu_and_bf16_on_cuda() {
    let train = |device, dtype| Loading {
        parts: TrainableParts { llm: true, vision: false, audio: false },
        ..Loading::eval(device, dtype)
    };
    let (f32_loss, _, masters) = sft_step(&train(Device::Cpu, Dtype::F32));
    assert_eq!(masters, 0);
    assert!(f32_loss.is_finite() && f32_loss > 0.0);
    // bf16 asked for on the CPU: said so, and computed in f32 on weights rounded to bf16 (so
    // no master copy: the parameters are f32). bf16 keeps 8 bits of mantissa: the loss agrees
    // to about 1%.
    let bf_cpu = train(Device::Cpu, Dtype::Bf16);
    assert!(bf_cpu.cpu_fallback().unwrap().contains("runs in f32 on the CPU"));
    let (loss, model, masters) = sft_step(&bf_cpu);
    assert_eq!(masters, 0);
    assert_ne!(loss, f32_loss, "the weights were rounded to bf16");
    assert!((loss - f32_loss).abs() < 0.02 * f32_loss, "bf16-rounded {loss} vs f32 {f32_loss}");
    assert_eq!(model.thinker().thinker.kind(), Kind::Float);
    if tch::Cuda::is_available() {
        let gpu = train(Device::Cuda(0), Dtype::Bf16);
        assert!(gpu.cpu_fallback().is_none());
        let (loss, model, masters) = sft_step(&gpu);
        assert_eq!(model.thinker().thinker.kind(), Kind::BFloat16);
        // bf16 parameters train through fp32 master copies, one per trained tensor.
        assert_eq!(masters, model.thinker().trainable_variables().len());
        // bf16 keeps 8 bits of mantissa: the loss agrees to about 1%.
        assert!((loss - f32_loss).abs() < 0.02 * f32_loss, "bf16 {loss} vs f32 {f32_loss}");
    }
}

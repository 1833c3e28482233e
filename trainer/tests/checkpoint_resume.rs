//! Resumption is exact: on CPU, 4 RL steps of the tiny fixture thinker equal 2 steps, a
//! checkpoint, a restore into freshly loaded objects (in this process and in a fresh process)
//! and 2 more steps — every weight and optimizer tensor bitwise identical (`Tensor::equal`).
//! The data order comes from the checkpointed cursor, rewards use the checkpointed loop RNG, and
//! libtorch is reseeded per step; the LR schedule has a warm-up, so its position matters too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod learner_support;

use learner_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use trainer::checkpoint::train_state::{TrainState, checkpoints_root, list_checkpoints, resume_dir};
use trainer::learner::LocalSteps;
use trainer::learner::thinker::{TrainableParts, TrainableThinker};
use trainer::learner::{DataCursor, RlLearner, RlRow, SplitMix64};
use trainer::model::thinker::{MediaInput, Thinker};
use trainer::model::weights::LoadOptions;
use trainer::recipe::resolved::{Checkpointing, Optimizer};
use trainer::recipe::{AlgorithmConfig, LrSchedule};

const CHILD_ENV: &str = "OMNIRL_RESUME_CHILD_DIR";
const TOTAL: u64 = 4;

fn optimizer_cfg() -> Optimizer {
    // Warm-up of ⌈0.25·4⌉ = 1 step (lr 0), then linear decay from 1e-3.
    optimizer_with(1e-3, LrSchedule::Linear, 0.25)
}

fn ckpt_cfg() -> Checkpointing {
    Checkpointing { save_every: 2, keep_last: 2, save_optimizer: true }
}

/// A fresh run: the fixture weights, a TAURA on-policy learner, a shuffled cursor over 10 prompts.
fn fresh() -> (TrainableThinker, RlLearner, TrainState) {
    let policy = tiny_thinker(TrainableParts::rl());
    let learner = RlLearner::new(&policy, &AlgorithmConfig::default(), &optimizer_cfg(), TOTAL).unwrap();
    let state = TrainState::new("rl", 42, DataCursor::new(10, 42, true, true));
    (policy, learner, state)
}

/// The rows of the next batch: two prompts, three trajectories each; prompts `i % 3 == 0` start
/// with the fixture's image (so the encoders train too). One reward per prompt comes from the
/// loop's RNG.
fn next_rows(state: &mut TrainState) -> Vec<RlRow<MediaInput>> {
    let (image_ids, image) = image_case();
    let batch = state.cursor.next_batch(2).unwrap();
    let mut rows = Vec::new();
    for i in batch.indices {
        let mut rng = SplitMix64::new(1000 + i as u64);
        let rewards = [(i % 3) as f64 / 2.0, (i % 2) as f64, state.rng.next_f64()];
        for r in group_rows(&mut rng, &format!("p{i}"), &rewards, 500, TINY_EOS, 6) {
            if i % 3 == 0 {
                let mut ids = image_ids.clone();
                ids.extend_from_slice(&r.ids);
                let row = RlRow { prompt_len: r.prompt_len + image_ids.len(), ids, ..r };
                rows.push(with_media(row, image.clone()));
            } else {
                rows.push(with_media(r, MediaInput::default()));
            }
        }
    }
    rows
}

fn train(policy: &TrainableThinker, learner: &mut RlLearner, state: &mut TrainState, steps: u64) {
    for _ in 0..steps {
        state.seed_torch();
        let rows = next_rows(state);
        let stats = learner.step(policy, &rows, &mut LocalSteps).unwrap();
        assert!(stats.optimizer_steps.iter().all(|r| !r.skipped));
        state.step += 1;
    }
}

/// Every weight (trainable or not) and every optimizer tensor equal, and the same counters.
fn assert_same(a: &(TrainableThinker, RlLearner), b: &(TrainableThinker, RlLearner), what: &str) {
    let (wa, wb) = (&a.0.thinker.weights, &b.0.thinker.weights);
    assert_eq!(wa.len(), wb.len());
    for name in wa.names() {
        assert!(wa.get(name).unwrap().equal(&wb.get(name).unwrap()), "{what}: weight {name} differs");
    }
    let (sa, sb) = (a.1.optimizer.state_tensors(), b.1.optimizer.state_tensors());
    assert_eq!(sa.len(), sb.len());
    for ((n, x), (m, y)) in sa.iter().zip(&sb) {
        assert_eq!(n, m);
        assert!(x.equal(y), "{what}: optimizer state {n} differs");
    }
    assert_eq!(a.1.optimizer.counters(), b.1.optimizer.counters(), "{what}");
}

/// Restore the newest checkpoint of `run` into fresh objects and train to `TOTAL`.
fn resume_and_finish(run: &Path) -> (TrainableThinker, RlLearner, TrainState) {
    let dir = resume_dir(run, None).unwrap().expect("a checkpoint");
    let (mut policy, mut learner, _) = fresh();
    let mut state = TrainState::restore(&dir, &mut policy, &mut learner.optimizer).unwrap();
    assert_eq!(state.step, 2);
    let remaining = TOTAL - state.step;
    train(&policy, &mut learner, &mut state, remaining);
    (policy, learner, state)
}

#[test]
fn four_steps_equal_two_plus_resume_plus_two() {
    if let Some(run) = std::env::var_os(CHILD_ENV) {
        // The fresh-process half: resume, finish, and checkpoint step 4 for the parent to compare.
        let run = PathBuf::from(run);
        let (policy, learner, state) = resume_and_finish(&run);
        let out = run.join("child");
        state.save(&checkpoints_root(&out), &policy, &learner.optimizer, &ckpt_cfg()).unwrap();
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");

    let (pa, mut la, mut sa) = fresh();
    train(&pa, &mut la, &mut sa, TOTAL);

    let (pb, mut lb, mut sb) = fresh();
    train(&pb, &mut lb, &mut sb, 2);
    let dir = sb.save(&checkpoints_root(&run), &pb, &lb.optimizer, &ckpt_cfg()).unwrap();
    assert!(dir.ends_with("step-00000002"));
    // The weights are a Hugging Face checkpoint our loader (and transformers) reads.
    let hf = Thinker::load(&dir.join("model"), LoadOptions::default()).unwrap();
    for name in pb.thinker.weights.names() {
        assert!(hf.weights.get(name).unwrap().equal(&pb.thinker.weights.get(name).unwrap()), "{name}");
    }
    drop((pb, lb, sb, hf));

    // In-process: fresh objects, restore, two steps.
    let (pc, lc, sc) = resume_and_finish(&run);
    let a = (pa, la);
    assert_same(&a, &(pc, lc), "in-process resume");
    assert_eq!((sc.cursor, sc.rng, sc.step), (sa.cursor.clone(), sa.rng, sa.step));

    // A fresh process: the same test binary in child mode.
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "four_steps_equal_two_plus_resume_plus_two", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, &run)
        .status()
        .unwrap();
    assert!(status.success());
    let child_dir = resume_dir(&run.join("child"), None).unwrap().unwrap();
    let (mut pd, mut ld, _) = fresh();
    let sd = TrainState::restore(&child_dir, &mut pd, &mut ld.optimizer).unwrap();
    assert_eq!((sd.step, sd.cursor, sd.rng), (TOTAL, sa.cursor.clone(), sa.rng));
    assert_same(&a, &(pd, ld), "fresh-process resume");
}

#[test]
fn retention_leftovers_and_damaged_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let root = checkpoints_root(&run);
    let model = toy();
    let mut learner = RlLearner::new(&model, &AlgorithmConfig::default(), &optimizer(1e-3), 10).unwrap();
    let mut state = TrainState::new("rl", 1, DataCursor::new(4, 1, false, false));
    assert_eq!(resume_dir(&run, None).unwrap(), None);
    for step in 1..=5 {
        state.step = step;
        state.save(&root, &model, &learner.optimizer, &ckpt_cfg()).unwrap();
    }
    let steps: Vec<u64> = list_checkpoints(&root).into_iter().map(|(s, _)| s).collect();
    assert_eq!(steps, vec![4, 5]);

    // A killed save left a temporary directory; a later checkpoint was damaged after the fact.
    let leftover = root.join(".tmp-step-00000006-999999");
    std::fs::create_dir_all(leftover.join("model")).unwrap();
    std::fs::write(leftover.join("model/model.safetensors"), b"partial").unwrap();
    let damaged = root.join("step-00000007");
    copy_dir(&root.join("step-00000005"), &damaged);
    let opt = damaged.join("optimizer.safetensors");
    let len = std::fs::metadata(&opt).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&opt).unwrap().set_len(len / 2).unwrap();
    assert_eq!(resume_dir(&run, None).unwrap(), Some(root.join("step-00000005")));
    assert!(resume_dir(&run, Some(damaged.clone())).is_err());
    assert_eq!(resume_dir(&run, Some(run.clone())).unwrap(), Some(root.join("step-00000005")));
    assert_eq!(resume_dir(&run, Some(root.join("step-00000004"))).unwrap(), Some(root.join("step-00000004")));
    assert!(resume_dir(&run, Some(tmp.path().join("nothing"))).is_err());
    let mut fresh_model = toy();
    assert!(TrainState::restore(&damaged, &mut fresh_model, &mut learner.optimizer).is_err());

    state.step = 6;
    state.save(&root, &model, &learner.optimizer, &ckpt_cfg()).unwrap();
    assert!(!leftover.exists());
    let steps: Vec<u64> = list_checkpoints(&root).into_iter().map(|(s, _)| s).collect();
    assert_eq!(steps, vec![5, 6]);

    // Without optimizer state: moments restart at zero, the schedule position is kept.
    let rows: Vec<RlRow<()>> = group_rows(&mut SplitMix64::new(3), "g", &[1.0, 0.0], TOY_VOCAB as u32, TOY_END, 3);
    learner.step(&model, &rows, &mut LocalSteps).unwrap();
    state.step = 7;
    let light = Checkpointing { save_optimizer: false, ..ckpt_cfg() };
    let dir = state.save(&root, &model, &learner.optimizer, &light).unwrap();
    assert!(!dir.join("optimizer.safetensors").exists());
    let mut m2 = toy();
    let mut l2 = RlLearner::new(&m2, &AlgorithmConfig::default(), &optimizer(1e-3), 10).unwrap();
    let back = TrainState::restore(&dir, &mut m2, &mut l2.optimizer).unwrap();
    assert!(!back.optimizer_saved);
    assert_eq!(l2.optimizer.counters(), learner.optimizer.counters());
    for ((n, a), (_, b)) in snapshot(&model).iter().zip(&snapshot(&m2)) {
        assert!(a.equal(b), "{n}");
    }
    assert!(l2.optimizer.state_tensors().iter().all(|(_, t)| t.abs().sum(tch::Kind::Float).double_value(&[]) == 0.0));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

//! Parity with transformers on the tiny random thinker of `scripts/make_model_fixtures.py`
//! (fixtures under tests/fixtures/model/): TMRoPE position ids and rope deltas, the placeholder
//! layout of the audio-in-video interleave, fp32 logits within 1e-4, the same 8 greedy tokens, and
//! teacher-forced log-probs equal to `log_softmax` of the reference logits. Every case runs on CPU
//! and, when libtorch sees a GPU, on CUDA too (logits within 1e-3 there: TF32 / other kernels).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod model_common;

use model_common::{CASES, cases, devices, ids, load, media, vec_i64};
use rollout::chat::{Run, interleave_runs};
use tch::{Device, Kind, Tensor};
use trainer::model::generate::{Prompt, SamplingParams, generate};
use trainer::model::logprobs::score;

#[test]
fn position_ids_and_rope_deltas_match_transformers() {
    let c = cases();
    let th = load(Device::Cpu);
    for name in CASES {
        let pos = th.positions(&ids(&c, name), &media(&c, name)).unwrap();
        let want = vec_i64(&c[&format!("{name}.positions")]);
        let n = pos.len();
        assert_eq!(pos.t, want[..n], "{name} t");
        assert_eq!(pos.h, want[n..2 * n], "{name} h");
        assert_eq!(pos.w, want[2 * n..], "{name} w");
        assert_eq!(pos.delta, vec_i64(&c[&format!("{name}.rope_delta")])[0], "{name} delta");
    }
}

#[test]
fn audio_in_video_layout_matches_the_processor() {
    let c = cases();
    let th = load(Device::Cpu);
    let m = media(&c, "video_audio");
    let g = m.videos[0].visual.grid_thw;
    let audio = trainer::model::audio::audio_output_len(m.audios[0].frames);
    let th_cfg = th.cfg.thinker();
    let want = interleave_runs(
        g[0],
        g[1] * g[2] / 4,
        m.videos[0].second_per_grid,
        audio,
        f64::from(th_cfg.position_id_per_seconds),
        f64::from(th_cfg.seconds_per_chunk),
    );
    // Runs of video / audio placeholders in the fixture's ids.
    let mut got: Vec<Run> = Vec::new();
    for id in ids(&c, "video_audio") {
        let run = if id == th.ids.video {
            Run::Video(1)
        } else if id == th.ids.audio {
            Run::Audio(1)
        } else {
            continue;
        };
        match (got.last_mut(), run) {
            (Some(Run::Video(n)), Run::Video(_)) | (Some(Run::Audio(n)), Run::Audio(_)) => *n += 1,
            _ => got.push(run),
        }
    }
    assert_eq!(got, want);
    assert!(got.len() >= 4, "the fixture should interleave at least two chunks: {got:?}");
}

#[test]
fn logits_greedy_tokens_and_logprobs_match_transformers() {
    let c = cases();
    for dev in devices() {
        let th = load(dev);
        let tol = if dev == Device::Cpu { 1e-4 } else { 1e-3 };
        for name in CASES {
            let (ids, m) = (ids(&c, name), media(&c, name));
            let want = &c[&format!("{name}.logits")];
            let got = th.logits(&ids, &m).unwrap().to_device(Device::Cpu);
            let diff = (&got - want).abs().max().double_value(&[]);
            println!("{dev:?} {name}: {} tokens, max |logits diff| = {diff:.2e}", ids.len());
            assert!(diff < tol, "{name}: max abs logits diff {diff}");
            let p = SamplingParams { greedy: true, ignore_eos: true, max_new_tokens: 8, ..SamplingParams::default() };
            let g = generate(&th, &[Prompt { ids: &ids, media: &m, seed: None }], &p).unwrap();
            let want_greedy: Vec<u32> = vec_i64(&c[&format!("{name}.greedy")]).into_iter().map(|x| x as u32).collect();
            assert_eq!(g[0].ids, want_greedy, "{name} greedy");
            // Teacher-forced log-probs of every token after the first = log_softmax of the reference.
            let s = score(&th, &ids, &m, 1, 7).unwrap();
            let lsm = want.log_softmax(-1, Kind::Float);
            let tgt = Tensor::from_slice(&ids[1..].iter().map(|&x| i64::from(x)).collect::<Vec<_>>());
            let ref_lp = lsm.narrow(0, 0, ids.len() as i64 - 1).gather(1, &tgt.unsqueeze(1), false).squeeze_dim(1);
            let d = (s.logprobs.to_device(Device::Cpu) - ref_lp).abs().max().double_value(&[]);
            assert!(d < tol, "{name}: logprob diff {d}");
            // The greedy log-prob is the raw log-softmax at the chosen token.
            let full: Vec<u32> = ids.iter().chain(&g[0].ids).copied().collect();
            let s2 = score(&th, &full, &m, ids.len(), 3).unwrap();
            let lp2 = Vec::<f32>::try_from(&s2.logprobs.to_device(Device::Cpu)).unwrap();
            for (a, b) in lp2.iter().zip(&g[0].logprobs) {
                assert!((a - b).abs() < 1e-4, "{name}: generate logprob {b} vs teacher-forced {a}");
            }
        }
    }
}

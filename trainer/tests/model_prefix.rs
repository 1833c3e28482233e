//! Prefix caching across turns (`model::prefix`) on the tiny fixture thinker: a turn generated
//! from its episode's kept context gives the tokens and log-probs of a full prefill (media after
//! the prefix, rows without a prefix in the same batch, greedy and sampled, and a third turn
//! from what the second kept); the rollout policy keeps and reuses contexts by episode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod model_common;

use model_common::{cases, devices, ids, load, media};
use tch::{Device, Tensor};
use trainer::model::generate::{Generation, Prompt, SamplingParams, generate, generate_cached};
use trainer::model::prefix::{PrefixKv, cached_prefill_pays, text_prefix_len};
use trainer::model::thinker::MediaInput;

fn copy(p: &PrefixKv) -> PrefixKv {
    PrefixKv {
        ids: p.ids.clone(),
        k: p.k.iter().map(Tensor::copy).collect(),
        v: p.v.iter().map(Tensor::copy).collect(),
    }
}

fn assert_same(want: &[Generation], got: &[Generation], what: &str) {
    assert_eq!(want.len(), got.len());
    for (r, (a, b)) in want.iter().zip(got).enumerate() {
        assert_eq!(a.ids, b.ids, "{what}: row {r}");
        let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-4);
        assert!(close(&a.logprobs, &b.logprobs), "{what}: row {r}: {:?} vs {:?}", a.logprobs, b.logprobs);
        let (pa, pb) = (a.policy_logprobs.as_ref().unwrap(), b.policy_logprobs.as_ref().unwrap());
        assert!(close(pa, pb), "{what}: row {r}: policy scores {pa:?} vs {pb:?}");
    }
}

#[test]
fn a_turn_from_its_kept_context_equals_a_full_prefill() {
    let c = cases();
    let none = MediaInput::default();
    let (image_media, audio_media) = (media(&c, "image"), media(&c, "audio"));
    for dev in devices() {
        let th = load(dev);
        let greedy = SamplingParams {
            greedy: true,
            max_new_tokens: 6,
            ignore_eos: true,
            policy_scores: true,
            ..Default::default()
        };
        // Turn 1 keeps its prompt and the five reply tokens that went through the model.
        let first = ids(&c, "text");
        let turn1 = [Prompt { ids: &first, media: &none, seed: Some(1) }];
        let (g1, mut kept, _) = generate_cached(&th, &turn1, vec![None], &greedy, true).unwrap();
        let kept = kept.remove(0).unwrap();
        let reply = &g1[0].ids;
        assert_eq!(kept.ids, [first.as_slice(), &reply[..5]].concat());
        assert_eq!(kept.k[0].size()[1], first.len() as i64 + 5);
        // Turn 2: the whole turn-1 context, then more text, or an image's prompt (media after the
        // prefix); and a fresh prompt with audio.
        let context: Vec<u32> = first.iter().chain(reply).copied().collect();
        let text2 = [context.as_slice(), &ids(&c, "text")].concat();
        let image2 = [context.as_slice(), &ids(&c, "image")].concat();
        let audio = ids(&c, "audio");
        let prompts = [
            Prompt { ids: &text2, media: &none, seed: Some(2) },
            Prompt { ids: &image2, media: &image_media, seed: Some(3) },
            Prompt { ids: &audio, media: &audio_media, seed: Some(4) },
        ];
        assert!(cached_prefill_pays(&th, &[(kept.len(), text2.len()), (kept.len(), image2.len())]));
        let sampled = SamplingParams { greedy: false, temperature: 0.7, top_k: Some(50), ..greedy.clone() };
        for params in [&greedy, &sampled] {
            let plain = generate(&th, &prompts, params).unwrap();
            let two = vec![Some(copy(&kept)), Some(copy(&kept))];
            let (cached, _, timing) = generate_cached(&th, &prompts[..2], two, params, false).unwrap();
            assert_eq!(timing.cached_tokens, 2 * kept.len());
            assert_same(&plain[..2], &cached, &format!("{dev:?} prefixed rows, greedy {}", params.greedy));
            let three = vec![Some(copy(&kept)), Some(copy(&kept)), None];
            let (mixed, _, _) = generate_cached(&th, &prompts, three, params, false).unwrap();
            assert_same(&plain, &mixed, &format!("{dev:?} with a fresh row, greedy {}", params.greedy));
        }
        // What turn 2 keeps: the text row all it fed, the image row up to its first media token.
        let three = vec![Some(copy(&kept)), Some(copy(&kept)), None];
        let (g2, kept2, _) = generate_cached(&th, &prompts, three, &greedy, true).unwrap();
        let kept_text = kept2[0].as_ref().unwrap();
        assert_eq!(kept_text.ids, [text2.as_slice(), &g2[0].ids[..5]].concat());
        assert_eq!(kept2[1].as_ref().unwrap().ids, image2[..text_prefix_len(&image2, &th.ids)]);
        assert!(text_prefix_len(&image2, &th.ids) < image2.len());
        // Turn 3 from turn 2's kept context (itself computed on the cached path).
        let text3 = [text2.as_slice(), &g2[0].ids, &ids(&c, "text")].concat();
        let p3 = [Prompt { ids: &text3, media: &none, seed: Some(5) }];
        let (g3, _, _) = generate_cached(&th, &p3, vec![Some(copy(kept_text))], &greedy, false).unwrap();
        assert_same(&generate(&th, &p3, &greedy).unwrap(), &g3, &format!("{dev:?} turn 3"));
        // A prefix as long as the prompt, or one over a media token, is refused.
        let whole = vec![Some(PrefixKv { ids: text2.clone(), ..copy(kept_text) })];
        assert!(generate_cached(&th, &prompts[..1], whole, &greedy, false).is_err());
    }
}

#[test]
fn the_rollout_policy_reuses_an_episodes_context() {
    use rollout::episode::EpisodeSpec;
    use rollout::policy::{Context, ContextInfo, Policy, Sampling};
    use trainer::model::policy::ThinkerPolicy;
    let c = cases();
    let spec = model_common::episode_spec();
    fn ctx<'a>(ids: &'a [u32], spec: &'a EpisodeSpec, episode: usize, step: u32) -> Context<'a> {
        let info = ContextInfo { episode, sample: episode, copy: 0, step, max_steps: 3, spec, history: &[] };
        Context { prompt_ids: ids, media: &[], info }
    }
    let greedy = Sampling { temperature: 0.0, top_k: None, max_new_tokens: 6, seed: 1, ..Sampling::train() };
    let first = ids(&c, "text");
    let mut cached_thinker = load(Device::Cpu);
    let mut plain_thinker = load(Device::Cpu);
    let mut cached = ThinkerPolicy::new(&mut cached_thinker, None, 1 << 20);
    let mut plain = ThinkerPolicy::new(&mut plain_thinker, None, 0);
    let t1 = cached.generate(&[ctx(&first, &spec, 0, 1), ctx(&first, &spec, 1, 1)], &greedy).unwrap();
    assert_eq!(t1[0].ids, plain.generate(&[ctx(&first, &spec, 0, 1)], &greedy).unwrap()[0].ids);
    // Episode 0 goes on from its context (on the cached path); episode 2 has none kept.
    let next: Vec<u32> = first.iter().chain(&t1[0].ids).chain(&first).copied().collect();
    let reused = first.len() + t1[0].ids.len() - 1;
    assert!(cached_prefill_pays(cached.thinker, &[(reused, next.len())]));
    let t2 = cached.generate(&[ctx(&next, &spec, 0, 2)], &greedy).unwrap();
    let want = plain.generate(&[ctx(&next, &spec, 0, 2)], &greedy).unwrap();
    assert_eq!(t2[0].ids, want[0].ids);
    for (a, b) in t2[0].logprobs.iter().zip(&want[0].logprobs) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    assert_eq!(cached.cached_prompt_tokens, reused);
    let other = cached.generate(&[ctx(&next, &spec, 2, 1)], &greedy).unwrap();
    assert_eq!((&other[0].ids, cached.cached_prompt_tokens), (&want[0].ids, reused));
    assert_eq!(plain.cached_prompt_tokens, 0);
    assert!(cached.prefixes.used() > 0);
}

//! Batched generation with a KV cache: prefill a left-padded batch, then decode one token per
//! active row per step, dropping finished rows from the cache.
//!
//! Sampling follows vLLM 0.9's V0 sampler (the reference's rollout engine): logits in fp32,
//! divided by the temperature, then top-k and top-p applied together on the sorted row (vLLM's
//! `_apply_top_k_top_p`: top-p removes the ascending prefix whose cumulative mass is `<= 1 - p`,
//! always keeping the top token), and the token drawn from the softmax of what is left. The
//! **log-prob** returned is `log_softmax` of those processed logits at the sampled token — the
//! log-probability under the distribution actually sampled from (vLLM V0 `logprobs=0`). With
//! `greedy` the token is the argmax and the log-prob is `log_softmax` of the raw logits
//! (temperature 1, no truncation), as vLLM does at temperature 0. The optional entropy is that of
//! the same distribution. Ids at or above `vocab_limit` (the tokenizer's size; rows beyond it are
//! padding) are masked to -inf first when a limit is given, and so are the media placeholder and
//! marker ids (a response has no media behind them); the CLI gives no limit, to match
//! transformers / vLLM on the raw vocabulary, the rollout policy gives the tokenizer's size.
//!
//! Randomness: Gumbel-max sampling with noise from a counter-based hash of (row seed, step, token
//! id) computed on the device with integer ops, so a row's tokens depend only on its own seed —
//! not on batch composition, padding or device.
//!
//! Positions: decode step k of a row sits at that row's largest prompt position + 1 + k on all three
//! axes (`cache index + rope_delta` for an unpadded sequence: transformers' rule, and vLLM's).
//! transformers' left-padded batches shift decode positions by the pad count; we do not copy that,
//! so a row's results do not depend on its batch.
//!
//! Prefixes: [`generate_cached`] takes, per prompt, the keys and values its episode kept from
//! the previous turn and prefills only the rest where that costs less, and returns what each row
//! keeps for its next turn (`model::prefix`).
//!
//! Left out: repetition / presence penalties, min-p, logit bias, beam search (the reference's
//! rollouts use none of them) and continuous batching.

use super::layers::Mask;
use super::prefix::{Prefilled, PrefixKv, cached_prefill, cached_prefill_pays, text_prefix_len};
use super::text::KvCache;
use super::thinker::{MResult, MediaInput, ModelError, Thinker};
use tch::{Device, Kind, Tensor};

/// How to pick tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub max_new_tokens: usize,
    pub greedy: bool,
    pub temperature: f64,
    /// `None` = no top-k.
    pub top_k: Option<usize>,
    /// 1.0 = no top-p.
    pub top_p: f64,
    /// Base seed; row seeds default to `seed + row index`.
    pub seed: u64,
    /// Stop ids (empty = the config's eos ids and pad id).
    pub stop: Vec<u32>,
    pub ignore_eos: bool,
    pub entropies: bool,
    /// Also return the policy's own scores of each sampled token (see [`Generation`]).
    pub policy_scores: bool,
    /// Mask ids `>= vocab_limit`.
    pub vocab_limit: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_new_tokens: 256,
            greedy: false,
            temperature: 1.0,
            top_k: None,
            top_p: 1.0,
            seed: 0,
            stop: Vec::new(),
            ignore_eos: false,
            entropies: false,
            policy_scores: false,
            vocab_limit: None,
        }
    }
}

/// One prompt: token ids (placeholders expanded) and its media.
#[derive(Debug, Clone, Copy)]
pub struct Prompt<'a> {
    pub ids: &'a [u32],
    pub media: &'a MediaInput,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    Stop,
    Length,
}

/// What one row produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub ids: Vec<u32>,
    pub logprobs: Vec<f32>,
    pub entropies: Option<Vec<f32>>,
    /// With `policy_scores`: the log-prob and entropy of each sampled token under the model's
    /// own distribution (`log_softmax` of the raw logits: temperature 1, no truncation, the full
    /// vocabulary), which is what a later scoring pass ([`super::logprobs::score`]) over the same
    /// sequence computes, up to floating-point order.
    pub policy_logprobs: Option<Vec<f32>>,
    pub policy_entropies: Option<Vec<f32>>,
    pub finish: Finish,
}

/// The 32-bit integer hash of Thomas Mueller (a bijection), on int64 tensors holding u32 values.
fn hash32(x: &Tensor) -> Result<Tensor, tch::TchError> {
    const M: i64 = 0xFFFF_FFFF;
    let mut h = x.f_bitwise_and(M)?;
    for _ in 0..2 {
        h = h.f_bitwise_xor_tensor(&h.f_bitwise_right_shift_tensor_scalar(16)?)?;
        h = h.f_mul_scalar(0x045d_9f3b)?.f_bitwise_and(M)?;
    }
    h.f_bitwise_xor_tensor(&h.f_bitwise_right_shift_tensor_scalar(16)?)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Gumbel noise `[rows, vocab]` (f32) for the given row seeds at `step`: one `[rows, vocab]`
/// computation (a fixed number of tensor ops per decode step, not a number per row).
pub fn gumbel_noise(seeds: &[u64], step: u64, vocab: i64, device: Device) -> Result<Tensor, tch::TchError> {
    let ids = Tensor::f_arange(vocab, (Kind::Int64, device))?.f_unsqueeze(0)?;
    let (mut k1, mut k2) = (Vec::with_capacity(seeds.len()), Vec::with_capacity(seeds.len()));
    for &s in seeds {
        let k = splitmix(splitmix(s) ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03));
        k1.push((k & 0xFFFF_FFFF) as i64);
        k2.push((k >> 32) as i64);
    }
    let column = |k: &[i64]| Tensor::f_from_slice(k)?.f_to_device(device)?.f_unsqueeze(1);
    let h1 = hash32(&ids.f_bitwise_xor_tensor(&column(&k1)?)?)?.f_to_kind(Kind::Double)?;
    let h2 = hash32(&ids.f_bitwise_xor_tensor(&column(&k2)?)?)?
        .f_bitwise_right_shift_tensor_scalar(11)?
        .f_to_kind(Kind::Double)?;
    // 53 random bits -> u in (0, 1).
    let u = h1.f_mul_scalar(2097152.0)?.f_add(&h2)?.f_add_scalar(0.5)?.f_div_scalar(9007199254740992.0)?;
    u.f_log()?.f_neg()?.f_log()?.f_neg()?.f_to_kind(Kind::Float)
}

/// Processed logits (temperature, top-k, top-p; vLLM V0 order) of `logits [n, V]` f32.
pub fn process_logits(logits: &Tensor, p: &SamplingParams) -> Result<Tensor, tch::TchError> {
    if p.greedy {
        return Ok(logits.shallow_clone());
    }
    let v = logits.size()[1];
    let mut l = logits.f_div_scalar(p.temperature)?;
    let top_k = p.top_k.filter(|&k| k > 0 && (k as i64) < v);
    if top_k.is_none() && p.top_p >= 1.0 {
        return Ok(l);
    }
    if let Some(k) = top_k.filter(|_| p.top_p >= 1.0) {
        // Top-k alone: the k-th largest value is the threshold the sorted path finds, without
        // sorting the vocabulary or scattering back (the same logits, bit for bit).
        let (values, _) = l.f_topk(k as i64, -1, true, true)?;
        let kth = values.f_narrow(1, k as i64 - 1, 1)?;
        return l.f_masked_fill(&l.f_lt_tensor(&kth)?, f64::NEG_INFINITY);
    }
    let (sorted, idx) = l.f_sort(-1, false)?;
    let mut sorted = sorted;
    if let Some(k) = top_k {
        let kth = sorted.f_narrow(1, v - k as i64, 1)?;
        sorted = sorted.f_masked_fill(&sorted.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
    }
    if p.top_p < 1.0 {
        let cum = sorted.f_softmax(-1, Kind::Float)?.f_cumsum(-1, Kind::Float)?;
        let drop = cum.f_le(1.0 - p.top_p)?;
        let _ = drop.f_narrow(1, v - 1, 1)?.f_fill_(0)?;
        sorted = sorted.f_masked_fill(&drop, f64::NEG_INFINITY)?;
    }
    l = l.f_scatter(1, &idx, &sorted)?;
    Ok(l)
}

/// Whether top-k 1 left every row exactly one token (no tie at the top): then that token is what
/// the Gumbel draw would pick, and the noise is not computed.
fn single_candidate(proc: &Tensor, p: &SamplingParams) -> Result<bool, tch::TchError> {
    if p.top_k != Some(1) {
        return Ok(false);
    }
    let left = proc.f_isfinite()?.f_sum_dim_intlist(-1, false, Kind::Int64)?;
    bool::try_from(&left.f_eq(1)?.f_all()?)
}

/// Entropy of `softmax(l)` per row, treating -inf entries as probability 0.
pub fn entropy_of(logp: &Tensor) -> Result<Tensor, tch::TchError> {
    let p = logp.f_exp()?;
    let terms = p.f_mul(logp)?;
    let terms = terms.f_nan_to_num(0.0, 0.0, 0.0)?;
    terms.f_sum_dim_intlist(-1, false, Kind::Float)?.f_neg()
}

/// Per row: the log-prob of `tokens` and the entropy under `logp` (a log-softmax), on the host.
fn policy_scores(logp: &Tensor, tokens: &Tensor) -> Result<(Vec<f32>, Vec<f32>), tch::TchError> {
    let lp = logp.f_gather(1, &tokens.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
    let lp = Vec::<f32>::try_from(&lp.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?)?;
    let ent = Vec::<f32>::try_from(&entropy_of(logp)?.f_to_device(Device::Cpu)?)?;
    Ok((lp, ent))
}

/// Wall-clock split of one [`generate_timed`] call: prefill (up to the first sampled tokens on
/// the host) and the decode steps after it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GenTiming {
    pub prefill_s: f64,
    pub decode_s: f64,
    pub decode_steps: usize,
    /// Prompt tokens taken from cached prefixes instead of prefilled (0 after a plain prefill).
    pub cached_tokens: usize,
}

/// Generates for every prompt (see the module doc). Runs under `no_grad`.
pub fn generate(thinker: &Thinker, prompts: &[Prompt<'_>], p: &SamplingParams) -> MResult<Vec<Generation>> {
    generate_timed(thinker, prompts, p).map(|(g, _)| g)
}

/// [`generate`] and its timing.
pub fn generate_timed(
    thinker: &Thinker,
    prompts: &[Prompt<'_>],
    p: &SamplingParams,
) -> MResult<(Vec<Generation>, GenTiming)> {
    let none: Vec<Option<PrefixKv>> = prompts.iter().map(|_| None).collect();
    generate_cached(thinker, prompts, none, p, false).map(|(g, _, t)| (g, t))
}

/// [`generate_timed`] with a cached prefix per prompt (`prefixes[r]`: a text-only prefix of
/// `prompts[r].ids`, shorter than it; see [`super::prefix`]), used where it saves arithmetic.
/// With `keep`, also returns what each row leaves for its next turn: the keys and values of its
/// prompt and fed reply tokens, cut before the first media token.
pub fn generate_cached(
    thinker: &Thinker,
    prompts: &[Prompt<'_>],
    prefixes: Vec<Option<PrefixKv>>,
    p: &SamplingParams,
    keep: bool,
) -> MResult<(Vec<Generation>, Vec<Option<PrefixKv>>, GenTiming)> {
    if prefixes.len() != prompts.len() {
        return Err(ModelError::Input(format!("{} cached prefixes for {} prompts", prefixes.len(), prompts.len())));
    }
    if !(p.greedy || p.temperature.is_finite() && p.temperature > 0.0) {
        return Err(ModelError::Input(format!("temperature {} must be positive (or use greedy)", p.temperature)));
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return Err(ModelError::Input(format!("top_p {} must be in (0, 1]", p.top_p)));
    }
    if prompts.iter().any(|pr| pr.ids.is_empty()) {
        return Err(ModelError::Input("an empty prompt".into()));
    }
    let mut timing = GenTiming::default();
    let mut kept: Vec<Option<PrefixKv>> = prompts.iter().map(|_| None).collect();
    let keep = keep.then_some(&mut kept);
    let out = tch::no_grad(|| generate_inner(thinker, prompts, prefixes, p, keep, &mut timing))?;
    Ok((out, kept, timing))
}

/// The prefill: plain, or with the cached prefixes where that costs less
/// ([`super::prefix::cached_prefill_pays`]).
fn prefill(
    thinker: &Thinker,
    prompts: &[Prompt<'_>],
    prefixes: Vec<Option<PrefixKv>>,
    max_new: usize,
) -> MResult<Prefilled> {
    let rows: Vec<(usize, usize)> =
        prompts.iter().zip(&prefixes).map(|(pr, pre)| (pre.as_ref().map_or(0, PrefixKv::len), pr.ids.len())).collect();
    if cached_prefill_pays(thinker, &rows) {
        return cached_prefill(thinker, prompts, &prefixes, max_new as i64);
    }
    let seqs: Vec<(&[u32], &MediaInput)> = prompts.iter().map(|pr| (pr.ids, pr.media)).collect();
    let inp = thinker.inputs(&seqs)?;
    let l = inp.h.size()[1];
    let mut cache = KvCache::new(&thinker.text, prompts.len() as i64, l + max_new as i64)?;
    let h = thinker.forward(&inp, Some(&mut cache))?;
    let logits = thinker.text.logits(&h.f_narrow(1, l - 1, 1)?.f_squeeze_dim(1)?)?;
    Ok(Prefilled { logits, cache, keys_valid: inp.valid, next_positions: inp.next_positions, cached_tokens: 0 })
}

/// What the row at active index `j` leaves for its next turn: its prompt and fed reply tokens
/// up to the first media token, with their keys and values.
fn kept_prefix(
    thinker: &Thinker,
    prompt: &Prompt<'_>,
    reply: &[u32],
    cache: &KvCache,
    keys_valid: &Tensor,
    j: usize,
) -> MResult<PrefixKv> {
    let text = text_prefix_len(prompt.ids, &thinker.ids);
    let fed = reply.len().saturating_sub(1);
    let ids: Vec<u32> = if text < prompt.ids.len() {
        prompt.ids[..text].to_vec()
    } else {
        prompt.ids.iter().chain(&reply[..fed]).copied().collect()
    };
    let cols = keys_valid.f_get(j as i64)?.f_nonzero()?.f_view([-1])?;
    let n = ids.len() as i64;
    if cols.size()[0] < n {
        return Err(ModelError::Input(format!("{} cached tokens for a {n}-token context", cols.size()[0])));
    }
    let (k, v) = cache.read_row(j as i64, &cols.f_narrow(0, 0, n)?)?;
    Ok(PrefixKv { ids, k, v })
}

fn generate_inner(
    thinker: &Thinker,
    prompts: &[Prompt<'_>],
    prefixes: Vec<Option<PrefixKv>>,
    p: &SamplingParams,
    mut keep_kv: Option<&mut Vec<Option<PrefixKv>>>,
    timing: &mut GenTiming,
) -> MResult<Vec<Generation>> {
    let t0 = std::time::Instant::now();
    let b = prompts.len();
    let mut out: Vec<Generation> = (0..b)
        .map(|_| Generation {
            ids: vec![],
            logprobs: vec![],
            entropies: p.entropies.then(Vec::new),
            policy_logprobs: p.policy_scores.then(Vec::new),
            policy_entropies: p.policy_scores.then(Vec::new),
            finish: Finish::Length,
        })
        .collect();
    if b == 0 || p.max_new_tokens == 0 {
        return Ok(out);
    }
    let dev = thinker.device();
    let stop: Vec<u32> = if p.stop.is_empty() {
        thinker.ids.eos.iter().copied().chain(thinker.ids.pad).collect()
    } else {
        p.stop.clone()
    };
    let Prefilled { mut logits, mut cache, mut keys_valid, next_positions: mut next_pos, cached_tokens } =
        prefill(thinker, prompts, prefixes, p.max_new_tokens)?;
    timing.cached_tokens = cached_tokens;
    // Per active row: original index, next position, seed.
    let mut active: Vec<usize> = (0..b).collect();
    let seeds: Vec<u64> =
        prompts.iter().enumerate().map(|(i, pr)| pr.seed.unwrap_or(p.seed.wrapping_add(i as u64))).collect();
    let vocab = logits.size()[1];
    // With a vocabulary limit (the rollout policy), media placeholders are masked too.
    let placeholders = if p.vocab_limit.is_some() { media_placeholder_ids(&thinker.ids, vocab, dev)? } else { None };
    for step in 0..p.max_new_tokens {
        let Picked { toks, lps, ent, policy } =
            pick_tokens(&mut logits, p, placeholders.as_ref(), (&seeds, &active), step)?;
        let now = t0.elapsed().as_secs_f64();
        if step == 0 {
            timing.prefill_s = now;
        } else {
            timing.decode_s = now - timing.prefill_s;
            timing.decode_steps = step;
        }
        let mut keep = Vec::with_capacity(active.len());
        for (j, &row) in active.iter().enumerate() {
            let g = &mut out[row];
            let tok = toks[j] as u32;
            g.ids.push(tok);
            g.logprobs.push(lps[j]);
            if let (Some(e), Some(es)) = (g.entropies.as_mut(), ent.as_ref()) {
                e.push(es[j]);
            }
            if let (Some(l), Some(e), Some((pl, pe))) =
                (g.policy_logprobs.as_mut(), g.policy_entropies.as_mut(), policy.as_ref())
            {
                l.push(pl[j]);
                e.push(pe[j]);
            }
            if !p.ignore_eos && stop.contains(&tok) {
                g.finish = Finish::Stop;
            } else {
                keep.push(j);
            }
        }
        let last = keep.is_empty() || step + 1 == p.max_new_tokens;
        if let Some(kept) = keep_kv.as_deref_mut() {
            for (j, &row) in active.iter().enumerate().filter(|&(j, _)| last || !keep.contains(&j)) {
                kept[row] = Some(kept_prefix(thinker, &prompts[row], &out[row].ids, &cache, &keys_valid, j)?);
            }
        }
        if last {
            break;
        }
        if keep.len() < active.len() {
            let k = Tensor::f_from_slice(&keep.iter().map(|&j| j as i64).collect::<Vec<_>>())?.f_to_device(dev)?;
            cache.select_rows(&k)?;
            keys_valid = keys_valid.f_index_select(0, &k)?;
            active = keep.iter().map(|&j| active[j]).collect();
            next_pos = keep.iter().map(|&j| next_pos[j]).collect();
        }
        let last: Vec<i64> = active.iter().map(|&r| i64::from(*out[r].ids.last().unwrap_or(&0))).collect();
        keys_valid = Tensor::f_cat(&[keys_valid, Tensor::f_ones([active.len() as i64, 1], (Kind::Bool, dev))?], 1)?;
        logits = decode_step(thinker, &last, &next_pos, &keys_valid, &mut cache)?;
        next_pos.iter_mut().for_each(|q| *q += 1);
    }
    Ok(out)
}

/// One decode step's choice for each active row: the token, its log-prob under the processed
/// distribution, and, when asked for, that distribution's entropy and the policy's own scores.
struct Picked {
    toks: Vec<i64>,
    lps: Vec<f32>,
    ent: Option<Vec<f32>>,
    policy: Option<(Vec<f32>, Vec<f32>)>,
}

/// Masks `logits` (vocabulary limit, media placeholders), processes them (temperature, top-k,
/// top-p) and picks a token per row: greedy, or Gumbel-max with each active row's seed (`seeds`
/// by original row, `active` the original row of each logits row) at `step`.
fn pick_tokens(
    logits: &mut Tensor,
    p: &SamplingParams,
    placeholders: Option<&Tensor>,
    (seeds, active): (&[u64], &[usize]),
    step: usize,
) -> MResult<Picked> {
    let (vocab, dev) = (logits.size()[1], logits.device());
    // The raw logits' log-softmax, before any masking: the policy's own distribution.
    let raw_logp = if p.policy_scores { Some(logits.f_log_softmax(-1, Kind::Float)?) } else { None };
    if let Some(limit) = p.vocab_limit.filter(|&x| (x as i64) < vocab) {
        let _ = logits.f_narrow(1, limit as i64, vocab - limit as i64)?.f_fill_(f64::NEG_INFINITY)?;
    }
    if let Some(ids) = placeholders {
        let _ = logits.f_index_fill_(1, ids, f64::NEG_INFINITY)?;
    }
    let proc = process_logits(logits, p)?;
    let logp = proc.f_log_softmax(-1, Kind::Float)?;
    let tokens = if p.greedy || single_candidate(&proc, p)? {
        proc.f_argmax(-1, false)?
    } else {
        let row_seeds: Vec<u64> = active.iter().map(|&r| seeds[r]).collect();
        proc.f_add(&gumbel_noise(&row_seeds, step as u64, vocab, dev)?)?.f_argmax(-1, false)?
    };
    let lp = logp.f_gather(1, &tokens.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
    let ent =
        if p.entropies { Some(Vec::<f32>::try_from(&entropy_of(&logp)?.f_to_device(Device::Cpu)?)?) } else { None };
    let policy = match &raw_logp {
        Some(raw) => Some(policy_scores(raw, &tokens)?),
        None => None,
    };
    let toks = Vec::<i64>::try_from(&tokens.f_to_device(Device::Cpu)?)?;
    let lps = Vec::<f32>::try_from(&lp.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?)?;
    Ok(Picked { toks, lps, ent, policy })
}

/// Feeds each active row's last token at its next position through the cached LM; returns the
/// next logits. `keys_valid` already includes the new token's column.
fn decode_step(
    thinker: &Thinker,
    last: &[i64],
    next_pos: &[i64],
    keys_valid: &Tensor,
    cache: &mut KvCache,
) -> MResult<Tensor> {
    let dev = thinker.device();
    let n = last.len() as i64;
    let x = thinker.text.embed(&Tensor::f_from_slice(last)?.f_view([n, 1])?.f_to_device(dev)?)?;
    let pos3: Vec<i64> = (0..3).flat_map(|_| next_pos.iter().copied()).collect();
    let pos = Tensor::f_from_slice(&pos3)?.f_view([3, n, 1])?.f_to_device(dev)?;
    let s = keys_valid.size()[1];
    let mask = Mask::Bool(keys_valid.f_view([n, 1, 1, s])?);
    let (cos, sin) = thinker.cos_sin(&pos)?;
    let h = thinker.text.forward(&x, &cos, &sin, &mask, Some(cache))?;
    Ok(thinker.text.logits(&h.f_squeeze_dim(1)?)?)
}

/// The media placeholder and marker ids (image, video, audio, and the vision/audio start and end
/// markers) within `vocab`, which a response never contains: a placeholder stands for media
/// features the environment supplies, so a sampled one would have nothing behind it.
fn media_placeholder_ids(
    ids: &super::config::SpecialTokens,
    vocab: i64,
    dev: Device,
) -> Result<Option<Tensor>, tch::TchError> {
    let list: Vec<i64> = ids.media_ids().into_iter().map(i64::from).filter(|&id| id < vocab).collect();
    if list.is_empty() { Ok(None) } else { Ok(Some(Tensor::from_slice(&list).f_to_device(dev)?)) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::gumbel_noise;
    use tch::{Device, Kind};

    /// A row's noise depends on its seed and the step only: the batch gives, bit for bit, each
    /// row's noise computed alone, and every value is a finite Gumbel draw.
    #[test]
    fn gumbel_noise_rows_do_not_depend_on_the_batch() {
        let seeds = [0u64, 7, 42, u64::MAX, 123_456_789];
        for step in [0u64, 1, 99] {
            let batch = gumbel_noise(&seeds, step, 768, Device::Cpu).unwrap();
            assert_eq!(batch.size(), [5, 768]);
            for (i, &s) in seeds.iter().enumerate() {
                let alone = gumbel_noise(&[s], step, 768, Device::Cpu).unwrap();
                let row = batch.narrow(0, i as i64, 1);
                assert!(row.equal(&alone), "seed {s} step {step}");
            }
            assert!(bool::try_from(batch.isfinite().all()).unwrap());
        }
        // Different steps and seeds give different noise; the draws look like Gumbel(0, 1):
        // mean about 0.5772 (Euler's constant) over 5 x 768 values.
        let a = gumbel_noise(&[1], 0, 768, Device::Cpu).unwrap();
        assert!(!a.equal(&gumbel_noise(&[1], 1, 768, Device::Cpu).unwrap()));
        assert!(!a.equal(&gumbel_noise(&[2], 0, 768, Device::Cpu).unwrap()));
        let mean = gumbel_noise(&seeds, 3, 768, Device::Cpu).unwrap().mean(Kind::Double).double_value(&[]);
        assert!((mean - 0.5772).abs() < 0.06, "{mean}");
    }

    /// Top-k without top-p masks exactly what the sorted path (sort, mask below the k-th
    /// largest, scatter back) masks, ties at the threshold included; and top-k 1 without a tie
    /// is seen as a single candidate.
    #[test]
    fn top_k_alone_equals_the_sorted_path() {
        use super::{SamplingParams, process_logits, single_candidate};
        tch::manual_seed(5);
        // Rounded to tenths: many ties, at the top and at the threshold.
        let logits = (tch::Tensor::randn([6, 50], (Kind::Float, Device::Cpu)) * 10.0).round() / 10.0;
        for k in [1usize, 2, 7, 49] {
            let p = SamplingParams { top_k: Some(k), temperature: 0.7, ..SamplingParams::default() };
            let got = process_logits(&logits, &p).unwrap();
            let l = &logits / 0.7;
            let (sorted, idx) = l.sort(-1, false);
            let kth = sorted.narrow(1, 50 - k as i64, 1);
            let want = l.scatter(1, &idx, &sorted.masked_fill(&sorted.lt_tensor(&kth), f64::NEG_INFINITY));
            assert!(got.equal(&want), "k {k}");
        }
        let p1 = SamplingParams { top_k: Some(1), ..SamplingParams::default() };
        let one = tch::Tensor::from_slice(&[0.5f32, 2.0, -1.0, 1.0, 3.0, 0.0]).view([2, 3]);
        assert!(single_candidate(&process_logits(&one, &p1).unwrap(), &p1).unwrap());
        let tie = tch::Tensor::from_slice(&[2.0f32, 2.0, -1.0, 1.0, 3.0, 0.0]).view([2, 3]);
        assert!(!single_candidate(&process_logits(&tie, &p1).unwrap(), &p1).unwrap());
        let p2 = SamplingParams { top_k: Some(2), ..SamplingParams::default() };
        assert!(!single_candidate(&process_logits(&one, &p2).unwrap(), &p2).unwrap());
    }

    /// Mueller's 32-bit hash on a host integer, written out apart from the tensor version.
    fn mueller(x: u64) -> u64 {
        let mut h = x & 0xFFFF_FFFF;
        for _ in 0..2 {
            h = (((h >> 16) ^ h).wrapping_mul(0x045d_9f3b)) & 0xFFFF_FFFF;
        }
        (h >> 16) ^ h
    }

    /// The noise of a few (seed, step, token) triples computed one scalar at a time on the host:
    /// keys from splitmix, two hashes, 53 bits to `u` in (0, 1), then `-ln(-ln u)`.
    #[test]
    fn gumbel_noise_matches_a_scalar_computation() {
        let seeds = [3u64, 1 << 40];
        let noise = gumbel_noise(&seeds, 17, 768, Device::Cpu).unwrap();
        for (row, &s) in seeds.iter().enumerate() {
            let k = super::splitmix(super::splitmix(s) ^ 17u64.wrapping_mul(0xD1B5_4A32_D192_ED03));
            for id in [0u64, 1, 255, 767] {
                let h1 = mueller(id ^ (k & 0xFFFF_FFFF));
                let h2 = mueller(id ^ (k >> 32)) >> 11;
                let u = (h1 as f64 * 2097152.0 + h2 as f64 + 0.5) / 9007199254740992.0;
                let want = -(-u.ln()).ln();
                let got = noise.double_value(&[row as i64, id as i64]);
                assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "seed {s} id {id}: {got} vs {want}");
            }
        }
    }
}

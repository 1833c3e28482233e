//! Prefix caching across the turns of an episode: the keys and values a turn's generation left
//! in the KV cache are kept, and the episode's next prompt, which repeats that context token for
//! token (system prompt, question, earlier turns, the reply just generated), prefills only what
//! is new. vLLM calls this automatic prefix caching; here it is keyed by episode, not by block
//! hash, because an episode's turns are the only prompts that share long prefixes.
//!
//! * What is kept: the prompt and the reply tokens that went through the model (a reply's last
//!   token was sampled but never fed), cut before the first media token (a placeholder or a
//!   vision/audio marker). A text-only prefix has plain positions and no encoder features, so the
//!   suffix's TMRoPE positions and features are those of the whole sequence, and memory
//!   consolidation (which replaces an earlier turn's media by a note) only ever shortens what
//!   matches.
//! * What is reused: the longest common prefix of the kept ids and the new prompt, at most all
//!   but the prompt's last token (its logits start the reply).
//! * The batch layout: row `r` holds `[pad | prefix_r | pad | suffix_r]` in the cache (prefixes
//!   right-aligned at `P = max prefix`, suffixes right-aligned after it), and the suffixes run as
//!   one forward under a boolean mask (a key is attended when valid and not after the query).
//!   The cache is then gathered into the plain left-padded layout, so decoding runs exactly as
//!   after a plain prefill. [`cached_prefill_pays`] picks this path only when its estimated
//!   arithmetic is below the plain prefill's, so a batch that mixes fresh and continuing
//!   episodes is not made slower.
//! * Memory: [`PrefixStore`] holds at most its byte budget (`rollout.prefix_cache_mib`), oldest
//!   entries evicted first; an episode's entry is taken out when its next turn generates.
//!
//! The reused keys and values were computed in another batch (and, for reply tokens, one decode
//! step at a time), so logits agree with a full prefill up to floating-point summation order,
//! not bit for bit (docs/performance.md, "Prefix caching across turns").
//!
//! Left out: sharing one prefix between episodes (the system prompt is short next to a turn's
//! context), and prefixes holding media (their positions and encoder features would have to be
//! kept as well).

use super::generate::Prompt;
use super::layers::Mask;
use super::text::KvCache;
use super::thinker::{MResult, MediaInput, Thinker};
use crate::model::SpecialTokens;
use std::collections::VecDeque;
use tch::{Kind, Tensor};

/// The cached keys and values of the first `ids.len()` tokens of a sequence.
#[derive(Debug)]
pub struct PrefixKv {
    pub ids: Vec<u32>,
    /// Per layer `[Hkv, ids.len(), d]`.
    pub k: Vec<Tensor>,
    pub v: Vec<Tensor>,
}

impl PrefixKv {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes of its keys and values.
    pub fn bytes(&self) -> u64 {
        self.k.iter().chain(&self.v).map(|t| (t.numel() * t.kind().elt_size_in_bytes()) as u64).sum()
    }

    /// Its first `n` tokens.
    pub fn truncated(self, n: usize) -> MResult<PrefixKv> {
        if n >= self.ids.len() {
            return Ok(self);
        }
        let cut = |t: &Tensor| t.f_narrow(1, 0, n as i64);
        Ok(PrefixKv {
            ids: self.ids[..n].to_vec(),
            k: self.k.iter().map(cut).collect::<Result<_, _>>()?,
            v: self.v.iter().map(cut).collect::<Result<_, _>>()?,
        })
    }
}

/// How many leading tokens of `ids` come before the first media token.
pub fn text_prefix_len(ids: &[u32], special: &SpecialTokens) -> usize {
    let media = special.media_ids();
    ids.iter().position(|id| media.contains(id)).unwrap_or(ids.len())
}

/// How many tokens of `kept` a prompt `ids` can reuse: their common prefix, leaving at least the
/// prompt's last token to run.
pub fn reusable_len(kept: &[u32], ids: &[u32]) -> usize {
    let common = kept.iter().zip(ids).take_while(|(a, b)| a == b).count();
    common.min(ids.len().saturating_sub(1))
}

/// Each episode's kept prefix, within a byte budget.
#[derive(Debug, Default)]
pub struct PrefixStore {
    budget: u64,
    used: u64,
    /// `(episode, prefix)`, oldest first.
    entries: VecDeque<(usize, PrefixKv)>,
}

impl PrefixStore {
    /// A store holding at most `budget` bytes (0: caching off).
    pub fn new(budget: u64) -> PrefixStore {
        PrefixStore { budget, ..PrefixStore::default() }
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// Removes `episode`'s entry, if any, and releases its bytes.
    fn remove(&mut self, episode: usize) -> Option<PrefixKv> {
        let at = self.entries.iter().position(|(e, _)| *e == episode)?;
        let (_, kept) = self.entries.remove(at)?;
        self.used = self.used.saturating_sub(kept.bytes());
        Some(kept)
    }

    /// Takes `episode`'s entry out and returns the part of it `ids` can reuse (`None`: nothing).
    pub fn take(&mut self, episode: usize, ids: &[u32]) -> MResult<Option<PrefixKv>> {
        let Some(kept) = self.remove(episode) else { return Ok(None) };
        let n = reusable_len(&kept.ids, ids);
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(kept.truncated(n)?))
    }

    /// Keeps `prefix` for `episode`'s next turn, evicting the oldest entries to stay within the
    /// budget; a prefix larger than the whole budget is not kept.
    pub fn put(&mut self, episode: usize, prefix: PrefixKv) {
        let bytes = prefix.bytes();
        if prefix.is_empty() || bytes > self.budget {
            return;
        }
        self.remove(episode);
        while self.used + bytes > self.budget {
            match self.entries.pop_front() {
                Some((_, old)) => self.used = self.used.saturating_sub(old.bytes()),
                None => break,
            }
        }
        self.used += bytes;
        self.entries.push_back((episode, prefix));
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.used
    }
}

/// Whether prefilling `(prefix, length)` rows with their cached prefixes costs less arithmetic
/// than a plain prefill of the whole prompts (both leave the same cache layout for decoding).
pub fn cached_prefill_pays(thinker: &Thinker, rows: &[(usize, usize)]) -> bool {
    if rows.iter().all(|&(p, _)| p == 0) {
        return false;
    }
    let (per_token, per_pair) = thinker.text.flops();
    let b = rows.len() as f64;
    let lmax = rows.iter().map(|&(_, l)| l).max().unwrap_or(0) as f64;
    let pmax = rows.iter().map(|&(p, _)| p).max().unwrap_or(0) as f64;
    let smax = rows.iter().map(|&(p, l)| l - p).max().unwrap_or(0) as f64;
    // The plain prefill runs causal attention per pad group: about half of each row's square;
    // the suffixes attend under a mask, to every column of the wider layout.
    let plain_pairs: f64 = rows.iter().map(|&(_, l)| (l * l) as f64 / 2.0).sum();
    let plain = b * lmax * per_token + plain_pairs * per_pair;
    let cached = b * smax * (per_token + (pmax + smax) * per_pair);
    cached < plain
}

/// What a prefill leaves for decoding: the last prompt position's logits `[B, V]`, the filled
/// cache, which cache columns hold real tokens `[B, columns]`, each row's next position, and how
/// many prompt tokens came from cached prefixes.
pub struct Prefilled {
    pub logits: Tensor,
    pub cache: KvCache,
    pub keys_valid: Tensor,
    pub next_positions: Vec<i64>,
    pub cached_tokens: usize,
}

/// Prefills `prompts`, each with its cached prefix (`prefixes[r]`, which must be a text-only
/// prefix of `prompts[r].ids` shorter than it), leaving room for `max_new` tokens.
pub fn cached_prefill(
    thinker: &Thinker,
    prompts: &[Prompt<'_>],
    prefixes: &[Option<PrefixKv>],
    max_new: i64,
) -> MResult<Prefilled> {
    let dev = thinker.device();
    let b = prompts.len() as i64;
    let plen: Vec<i64> = prefixes.iter().map(|p| p.as_ref().map_or(0, |p| p.len() as i64)).collect();
    for (pr, &p) in prompts.iter().zip(&plen) {
        if p as usize >= pr.ids.len() || (text_prefix_len(pr.ids, &thinker.ids) as i64) < p {
            return Err(super::thinker::ModelError::Input(format!(
                "a cached prefix of {p} tokens does not fit a {}-token prompt",
                pr.ids.len()
            )));
        }
    }
    // The whole sequences' embeddings and positions, less each cached prefix.
    let seqs: Vec<(&[u32], &MediaInput)> = prompts.iter().map(|pr| (pr.ids, pr.media)).collect();
    let (mut embeds, mut positions) = thinker.embedded(&seqs)?;
    for ((e, pos), &p) in embeds.iter_mut().zip(&mut positions).zip(&plen) {
        *e = e.f_narrow(0, p, e.size()[0] - p)?;
        for axis in [&mut pos.t, &mut pos.h, &mut pos.w] {
            axis.drain(..p as usize);
        }
    }
    let suffix = thinker.batch_inputs(&embeds, &positions)?;
    let pmax = plen.iter().copied().max().unwrap_or(0);
    let smax = suffix.h.size()[1];
    let width = pmax + smax;
    let mut cache = KvCache::new(&thinker.text, b, width + max_new)?;
    let mut prefix_valid = vec![false; (b * pmax) as usize];
    for (r, pre) in prefixes.iter().enumerate() {
        if let Some(pre) = pre {
            let p = pre.len() as i64;
            cache.write_row(r as i64, pmax - p, &pre.k, &pre.v)?;
            let row = &mut prefix_valid[r * pmax as usize..(r + 1) * pmax as usize];
            row[(pmax - p) as usize..].iter_mut().for_each(|v| *v = true);
        }
    }
    cache.len = pmax;
    let prefix_valid = Tensor::f_from_slice(&prefix_valid)?.f_view([b, pmax])?.f_to_device(dev)?;
    let keys_valid = Tensor::f_cat(&[prefix_valid, suffix.valid.shallow_clone()], 1)?;
    let mask = suffix_mask(&keys_valid, &suffix.valid, pmax)?;
    let (cos, sin) = thinker.cos_sin(&suffix.positions)?;
    let h = thinker.text.forward(&suffix.h, &cos, &sin, &Mask::Bool(mask), Some(&mut cache))?;
    let logits = thinker.text.logits(&h.f_narrow(1, smax - 1, 1)?.f_squeeze_dim(1)?)?;
    let rows: Vec<(i64, i64)> = prompts.iter().zip(&plen).map(|(pr, &p)| (p, pr.ids.len() as i64 - p)).collect();
    let (cols, keys_valid) = left_padded_layout(&rows, pmax, smax, dev)?;
    cache.gather_columns(&cols, cols.size()[1] + max_new)?;
    let cached_tokens = plen.iter().sum::<i64>() as usize;
    Ok(Prefilled { logits, cache, keys_valid, next_positions: suffix.next_positions, cached_tokens })
}

/// For rows of `(prefix, suffix)` lengths laid out as `[pad | prefix | pad | suffix]` (prefixes
/// ending at column `pmax`, suffixes at `pmax + smax`): the old column of each column of the plain
/// left-padded layout `[pad | prefix suffix]` (`[B, W]`, W the longest row) and its valid flags,
/// so decoding attends over as many columns as after a plain prefill.
fn left_padded_layout(rows: &[(i64, i64)], pmax: i64, smax: i64, dev: tch::Device) -> MResult<(Tensor, Tensor)> {
    let w = rows.iter().map(|&(p, s)| p + s).max().unwrap_or(0);
    let mut cols = Vec::with_capacity(rows.len() * w as usize);
    let mut valid = Vec::with_capacity(rows.len() * w as usize);
    for &(p, s) in rows {
        let pad = w - p - s;
        for c in 0..w {
            let j = c - pad;
            cols.push(match j {
                j if j < 0 => 0,
                j if j < p => pmax - p + j,
                j => pmax + smax - s + (j - p),
            });
            valid.push(j >= 0);
        }
    }
    let b = rows.len() as i64;
    let cols = Tensor::f_from_slice(&cols)?.f_view([b, w])?.f_to_device(dev)?;
    let valid = Tensor::f_from_slice(&valid)?.f_view([b, w])?.f_to_device(dev)?;
    Ok((cols, valid))
}

/// `[B, 1, S, P + S]`: suffix query `q` (column `P + q`) attends to the valid keys up to its own
/// column; a padding query attends only to itself.
fn suffix_mask(keys_valid: &Tensor, queries_valid: &Tensor, pmax: i64) -> MResult<Tensor> {
    let dev = keys_valid.device();
    let (b, width) = (keys_valid.size()[0], keys_valid.size()[1]);
    let s = queries_valid.size()[1];
    let key_col = Tensor::f_arange(width, (Kind::Int64, dev))?.f_view([1, 1, width])?;
    let query_col = Tensor::f_arange(s, (Kind::Int64, dev))?.f_add_scalar(pmax)?.f_view([1, s, 1])?;
    let query_valid = queries_valid.f_view([b, s, 1])?;
    let seen = key_col.f_le_tensor(&query_col)?.f_logical_and(&keys_valid.f_view([b, 1, width])?)?;
    let own = key_col.f_eq_tensor(&query_col)?.f_logical_and(&query_valid.f_logical_not()?)?;
    Ok(seen.f_logical_and(&query_valid)?.f_logical_or(&own)?.f_unsqueeze(1)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::Device;

    fn prefix(ids: &[u32], token_bytes: usize) -> PrefixKv {
        // One layer, [1, n, token_bytes / 8] f32 keys and values: `token_bytes` bytes a token.
        let d = (token_bytes / 8) as i64;
        let t = || Tensor::zeros([1, ids.len() as i64, d], (Kind::Float, Device::Cpu));
        PrefixKv { ids: ids.to_vec(), k: vec![t()], v: vec![t()] }
    }

    #[test]
    fn reusable_length_is_the_common_prefix_less_the_last_prompt_token() {
        // (kept, prompt, reusable)
        let cases: &[(&[u32], &[u32], usize)] = &[
            (&[1, 2, 3], &[1, 2, 3, 4, 5], 3),
            (&[1, 2, 3], &[1, 2, 3], 2),
            (&[1, 2, 9], &[1, 2, 3, 4], 2),
            (&[7], &[1, 2], 0),
            (&[], &[1, 2], 0),
            (&[1, 2, 3, 4], &[1], 0),
        ];
        for &(kept, ids, want) in cases {
            assert_eq!(reusable_len(kept, ids), want, "{kept:?} {ids:?}");
        }
    }

    #[test]
    fn text_prefix_stops_at_the_first_media_token() {
        let special = SpecialTokens {
            audio: 3,
            image: 9,
            video: 10,
            audio_start: 4,
            audio_end: 5,
            vision_start: 6,
            vision_end: 7,
            vision_pad: None,
            bos: None,
            eos: vec![2],
            pad: Some(0),
        };
        assert_eq!(text_prefix_len(&[20, 21, 6, 10, 10, 7, 22], &special), 2);
        assert_eq!(text_prefix_len(&[20, 4, 3, 5], &special), 1);
        assert_eq!(text_prefix_len(&[20, 21, 22], &special), 3);
    }

    /// Entries are taken out when used, the store keeps to its budget by evicting the oldest
    /// entry, and a prefix larger than the budget is not kept.
    #[test]
    fn the_store_keeps_to_its_budget_oldest_out_first() {
        // 64 bytes a token (32 of keys, 32 of values).
        let mut s = PrefixStore::new(64 * 10);
        s.put(1, prefix(&[1, 2, 3, 4], 64));
        s.put(2, prefix(&[5, 6, 7, 8], 64));
        assert_eq!(s.used(), 64 * 8);
        s.put(3, prefix(&[9, 9, 9], 64)); // 11 tokens > 10: episode 1 goes
        assert_eq!(s.used(), 64 * 7);
        assert!(s.take(1, &[1, 2, 3, 4, 5]).unwrap().is_none());
        let got = s.take(2, &[5, 6, 0, 0]).unwrap().unwrap();
        assert_eq!(got.ids, [5, 6]);
        assert_eq!(got.k[0].size(), [1, 2, 8]);
        assert!(s.take(2, &[5, 6, 7, 8, 9]).unwrap().is_none(), "taken out by the first lookup");
        assert_eq!(s.used(), 64 * 3);
        s.put(4, prefix(&[1; 11], 64));
        assert_eq!(s.used(), 64 * 3, "larger than the whole budget");
        s.put(3, prefix(&[9, 9], 64));
        assert_eq!(s.used(), 64 * 2, "replaces the episode's older entry");
        assert!(!PrefixStore::new(0).enabled());
    }
}

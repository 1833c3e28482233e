//! Placeholder expansion: how many `<|IMAGE|>` / `<|VIDEO|>` / `<|AUDIO|>` tokens a media part
//! becomes, and the audio-in-video interleave (docs/reference.md#audio-in-video,
//! docs/reference.md#chat-template), computed from the processor's grid sizes exactly as
//! transformers' `Qwen2_5OmniProcessor` does (`replace_multimodal_special_tokens`,
//! `get_chunked_index`).
//!
//! The interleave splits the video tokens by their temporal position id
//! `k * second_per_grid * position_id_per_seconds` (float, as in the processor) and the audio tokens
//! by their index, both into chunks of `position_id_per_seconds * seconds_per_chunk` ids, and emits
//! chunk j as `[video tokens of chunk j][audio tokens of chunk j]`. Like the processor, a chunk
//! boundary advances by one chunk per token, so a video whose temporal ids jump by more than a
//! chunk is split at each of its next tokens rather than by value (a grid then spans several
//! chunks); we keep that rule so the layout matches the reference token for token.
//!
//! Left out: the `Picture n: ` / `Video n: ` prefixes (`add_vision_id`, off in the reference).

/// Mel frames → audio tokens after the two convolutions and the pair pooling
/// (`((F - 1) / 2 + 1 - 2) / 2 + 1`, docs/reference.md#audio-encoder); 0 for fewer than 2
/// frames' worth.
pub fn audio_tokens_for_frames(frames: usize) -> usize {
    if frames == 0 {
        return 0;
    }
    let after_conv = (frames - 1) / 2 + 1;
    if after_conv < 2 { 0 } else { (after_conv - 2) / 2 + 1 }
}

/// `(start, end)` index ranges of `values` (non-decreasing) split at multiples of `per_chunk`,
/// transformers' `get_chunked_index` (at most one boundary per element).
pub fn chunked_index(values: &[f64], per_chunk: f64) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut start, mut chunk) = (0usize, 1u64);
    for (i, &v) in values.iter().enumerate() {
        if v >= chunk as f64 * per_chunk {
            out.push((start, i));
            start = i;
            chunk += 1;
        }
    }
    out.push((start, values.len()));
    out
}

/// One piece of an interleaved audio-in-video block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Video(usize),
    Audio(usize),
}

/// The `[VIDEO x v_j][AUDIO x a_j]` runs (empty ones dropped) between
/// `<|vision_bos|><|audio_bos|>` and `<|audio_eos|><|vision_eos|>`.
/// `grid_thw` is the video's patch grid; `tokens_per_grid = h * w / merge^2`.
pub fn interleave_runs(
    grid_t: usize,
    tokens_per_grid: usize,
    second_per_grid: f64,
    audio_tokens: usize,
    position_id_per_seconds: f64,
    seconds_per_chunk: f64,
) -> Vec<Run> {
    let mut video_ids = Vec::with_capacity(grid_t.saturating_mul(tokens_per_grid));
    for k in 0..grid_t {
        let t = k as f64 * second_per_grid * position_id_per_seconds;
        video_ids.extend(std::iter::repeat_n(t, tokens_per_grid));
    }
    let audio_ids: Vec<f64> = (0..audio_tokens).map(|i| i as f64).collect();
    // The processor truncates the chunk size to an integer.
    let per_chunk = (position_id_per_seconds * seconds_per_chunk).trunc();
    let v = chunked_index(&video_ids, per_chunk);
    let a = chunked_index(&audio_ids, per_chunk);
    let mut runs = Vec::new();
    for j in 0..v.len().max(a.len()) {
        if let Some(&(s, e)) = v.get(j).filter(|(s, e)| e > s) {
            runs.push(Run::Video(e - s));
        }
        if let Some(&(s, e)) = a.get(j).filter(|(s, e)| e > s) {
            runs.push(Run::Audio(e - s));
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_token_counts_match_the_processor_formula() {
        // docs/reference.md#mel: 1 s → 25, 30 s → 750, 404 valid frames → 101.
        for (frames, tokens) in [(100, 25), (3000, 750), (30000, 7500), (404, 101), (1, 0), (3, 1), (0, 0)] {
            assert_eq!(audio_tokens_for_frames(frames), tokens, "{frames}");
        }
    }

    #[test]
    fn chunked_index_follows_the_reference_one_boundary_per_element() {
        assert_eq!(chunked_index(&[0.0, 1.0, 49.0, 50.0, 99.0, 100.0], 50.0), [(0, 3), (3, 5), (5, 6)]);
        // A jump over two chunk sizes: one boundary per element, so the run after it is split.
        assert_eq!(chunked_index(&[0.0, 125.0, 125.0, 125.0], 50.0), [(0, 1), (1, 2), (2, 4)]);
        assert_eq!(chunked_index(&[], 50.0), [(0, 0)]);
    }

    #[test]
    fn worked_example_of_the_reference_note() {
        // docs/reference.md#tmrope: 10 s, grid (10, 40, 72) → 720 tokens per grid, 250 audio tokens,
        // second_per_grid 1.0: 5 chunks of [2 grids = 1440 video][50 audio].
        let runs = interleave_runs(10, 720, 1.0, 250, 25.0, 2.0);
        let want: Vec<Run> = (0..5).flat_map(|_| [Run::Video(1440), Run::Audio(50)]).collect();
        assert_eq!(runs, want);
        // Audio longer than the video: trailing audio chunks stand alone.
        let runs = interleave_runs(2, 4, 1.0, 120, 25.0, 2.0);
        assert_eq!(runs, [Run::Video(8), Run::Audio(50), Run::Audio(50), Run::Audio(20)]);
    }
}

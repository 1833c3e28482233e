//! What the demo page shows of the media a turn delivered: re-extracted from the video with the
//! report's [`MediaEmbedder`] (small PNG thumbnails with their timestamps, a WAV for
//! `get_audio`, a strip of frames plus its audio for `get_clip`) and sent inside the turn's event
//! as data URIs, so no request ever names a file. Bounded per run by the embedder's budget.
//!
//! Left out: the tensors the model received (pixel budgets, 2 fps clip sampling): a strip shows
//! what a clip covers, not its exact frames (as `omnirl report`;
//! docs/reference.md#environment-media-extraction).

use crate::run_report::media::{MediaEmbedder, MediaOptions};
use serde_json::{Value, json};
use std::path::Path;

/// The embedder of one run: thumbnails 160 px wide, at most 8 per turn, 6 s of audio per item,
/// 6 MiB per run.
pub fn embedder() -> MediaEmbedder {
    MediaEmbedder::new(MediaOptions { budget_bytes: 6 << 20, ..MediaOptions::default() })
}

fn thumbs(embed: &mut MediaEmbedder, video: &Path, s: f64, e: f64, n: usize) -> Value {
    match embed.frames(video, s, e, n) {
        Ok(Some(t)) => Value::Array(t.iter().map(|t| json!({"t": t.t, "uri": t.uri})).collect()),
        Ok(None) => json!({"note": "media budget of this run spent"}),
        Err(err) => json!({"note": err}),
    }
}

fn audio(embed: &mut MediaEmbedder, video: &Path, s: f64, e: f64) -> Value {
    match embed.audio(video, s, e) {
        Ok(Some(a)) => json!({"uri": a.uri, "seconds": a.seconds}),
        Ok(None) => json!({"note": "media budget of this run spent"}),
        Err(err) => json!({"note": err}),
    }
}

/// The page's view of a step's `media` record (`null` when the step delivered none):
/// `{"kind", "start", "end", "frames": [{"t", "uri"}], "audio": {"uri", "seconds"}}`, with a
/// `note` in place of what could not be shown.
pub fn media_view(media: &Value, video: &Path, embed: &mut MediaEmbedder) -> Value {
    let Some(kind) = media.get("kind").and_then(Value::as_str) else { return Value::Null };
    let (Some(s), Some(e)) = (media.get("start").and_then(Value::as_f64), media.get("end").and_then(Value::as_f64))
    else {
        return Value::Null;
    };
    let mut view = json!({"kind": kind, "start": s, "end": e});
    match kind {
        "frames" => {
            let n = media.get("timestamps").and_then(Value::as_array).map_or(1, Vec::len).max(1);
            view["frames"] = thumbs(embed, video, s, e, n);
        }
        "audio" => view["audio"] = audio(embed, video, s, e),
        "clip" => {
            let n = embed.opts.max_frames.max(2);
            view["frames"] = thumbs(embed, video, s, e, n);
            if embed.has_audio(video) {
                view["audio"] = audio(embed, video, s, e);
            }
        }
        _ => {}
    }
    view
}

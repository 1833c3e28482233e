//! Browsable trajectories: `results.jsonl` lines of an eval (their `steps`, one record per stored
//! turn, `run::trace`) and `omnirl infer` trajectory files (every physical step, with the prompt
//! text and the environment's feedback), rendered as one collapsible block each: the question,
//! options, answer and prediction, then per step the observation, think, confidence, action,
//! error and feedback, and the media the step delivered (frames as thumbnails, audio as an
//! `<audio controls>` player, a clip as a strip of frames and its audio; see `media.rs`).
//!
//! Lines written before `steps` existed are shown from their `actions` and `last_response`
//! (no media). Left out: diffing two trajectories, and the raw token ids.

use super::html::esc;
use super::media::MediaEmbedder;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One trajectory to show and where it came from.
#[derive(Debug, Clone)]
pub struct Item {
    /// `eval/results.jsonl:3` or the trajectory file.
    pub source: String,
    pub line: Value,
}

/// Where videos are looked for when a path is relative.
#[derive(Debug, Clone, Default)]
pub struct VideoLookup {
    pub roots: Vec<PathBuf>,
}

impl VideoLookup {
    /// The first existing candidate: the path as written (from the working directory), then
    /// under each root.
    pub fn find(&self, video: &str) -> Option<PathBuf> {
        let p = Path::new(video);
        if p.is_file() {
            return Some(p.to_path_buf());
        }
        if p.is_absolute() {
            return None;
        }
        self.roots.iter().map(|r| r.join(p)).find(|c| c.is_file())
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn field(out: &mut String, name: &str, v: Option<String>) {
    if let Some(v) = v.filter(|s| !s.trim().is_empty()) {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(name), esc(&v));
    }
}

fn fmt_s(v: f64) -> String {
    format!("{v:.2}s")
}

/// Renders the delivered media of one step (`media` of a step record).
fn step_media(out: &mut String, media: &Value, video: Option<&Path>, embed: &mut MediaEmbedder) {
    let Some(kind) = media.get("kind").and_then(Value::as_str) else { return };
    let (Some(s), Some(e)) = (media.get("start").and_then(Value::as_f64), media.get("end").and_then(Value::as_f64))
    else {
        return;
    };
    let label = format!("{kind} {}–{}", fmt_s(s), fmt_s(e));
    if !embed.opts.enabled {
        let _ = write!(out, "<div class=\"media note\">{}</div>", esc(&label));
        return;
    }
    let Some(video) = video else {
        let _ = write!(out, "<div class=\"media note\">{}: video not found</div>", esc(&label));
        return;
    };
    out.push_str("<div class=\"media\">");
    let note = |out: &mut String, msg: &str| {
        let _ = write!(out, "<span class=\"note\">{}</span>", esc(msg));
    };
    let frames = |out: &mut String, embed: &mut MediaEmbedder, n: usize, strip: bool| match embed.frames(video, s, e, n)
    {
        Ok(Some(thumbs)) => {
            if strip {
                out.push_str("<figure><div class=\"strip\">");
            }
            for t in &thumbs {
                if strip {
                    let _ = write!(
                        out,
                        "<img src=\"{}\" alt=\"frame {}\" title=\"{}\">",
                        t.uri,
                        esc(&fmt_s(t.t)),
                        esc(&fmt_s(t.t))
                    );
                } else {
                    let _ = write!(
                        out,
                        "<figure><img src=\"{}\" alt=\"frame {}\"><figcaption>{}</figcaption></figure>",
                        t.uri,
                        esc(&fmt_s(t.t)),
                        esc(&fmt_s(t.t))
                    );
                }
            }
            if strip {
                let _ = write!(out, "</div><figcaption>{}</figcaption></figure>", esc(&label));
            }
            if thumbs.len() < n && !strip {
                let _ = write!(out, "<span class=\"note\">{} of {n} frames shown</span>", thumbs.len());
            }
        }
        Ok(None) => {
            let _ = write!(out, "<span class=\"note\">{}: media budget spent</span>", esc(&label));
        }
        Err(err) => {
            let _ = write!(out, "<span class=\"note\">{}: {}</span>", esc(&label), esc(&err));
        }
    };
    let audio = |out: &mut String, embed: &mut MediaEmbedder| match embed.audio(video, s, e) {
        Ok(Some(sound)) => {
            let cut =
                if sound.seconds + 0.05 < e - s { format!(" (first {})", fmt_s(sound.seconds)) } else { String::new() };
            let _ = write!(
                out,
                "<figure><audio controls preload=\"metadata\" src=\"{}\"></audio><figcaption>audio {}–{}{}</figcaption></figure>",
                sound.uri,
                esc(&fmt_s(s)),
                esc(&fmt_s(e)),
                esc(&cut)
            );
        }
        Ok(None) => {
            let _ = write!(out, "<span class=\"note\">audio: media budget spent</span>");
        }
        Err(err) => {
            let _ = write!(out, "<span class=\"note\">audio: {}</span>", esc(&err));
        }
    };
    match kind {
        "frames" => {
            let n = media.get("timestamps").and_then(Value::as_array).map_or(1, Vec::len).max(1);
            frames(out, embed, n, false);
        }
        "audio" => audio(out, embed),
        "clip" => {
            let n = embed.opts.max_frames.max(2);
            frames(out, embed, n, true);
            if embed.has_audio(video) {
                audio(out, embed);
            }
        }
        other => note(out, &format!("unknown media kind {other}")),
    }
    out.push_str("</div>");
}

/// The step records of a line (`steps`, else a stand-in built from `actions`).
fn steps_of(line: &Value) -> Vec<Value> {
    if let Some(steps) = line.get("steps").and_then(Value::as_array) {
        return steps.clone();
    }
    let actions = line.get("actions").and_then(Value::as_array).cloned().unwrap_or_default();
    let n = actions.len();
    actions
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let response =
                if i + 1 == n { line.get("last_response").cloned().unwrap_or(Value::Null) } else { Value::Null };
            serde_json::json!({"step": i + 1, "action_type": a, "response": response})
        })
        .collect()
}

/// One trajectory block (`open`: expanded at first).
pub fn render(item: &Item, lookup: &VideoLookup, embed: &mut MediaEmbedder, open: bool) -> String {
    let l = &item.line;
    let get = |k: &str| l.get(k).and_then(text);
    let qtype = get("type").or_else(|| get("question_type")).unwrap_or_else(|| "?".into());
    let outcome = match l.get("correct").and_then(Value::as_bool) {
        Some(true) => "correct",
        Some(false) => "incorrect",
        None => "unscored",
    };
    let (badge, mark) = match outcome {
        "correct" => ("ok", "✓"),
        "incorrect" => ("bad", "✗"),
        _ => ("na", "?"),
    };
    let question = get("question").unwrap_or_default();
    let short: String = question.chars().take(90).collect();
    let steps = steps_of(l);
    let reward = l.get("reward").and_then(Value::as_f64).map_or("–".to_string(), |r| format!("{r:.3}"));
    let mut out = String::new();
    let _ = write!(
        out,
        "<details{} class=\"traj\" data-type=\"{}\" data-outcome=\"{outcome}\"><summary><span class=\"badge {badge}\">{mark}</span>\
         <b>{}</b> · {} · {}{} · reward {} · {} step(s)</summary><div class=\"traj-body\"><dl class=\"fields\">",
        if open { " open" } else { "" },
        esc(&qtype),
        esc(&item.source),
        esc(&qtype),
        esc(&short),
        if short.len() < question.len() { "…" } else { "" },
        esc(&reward),
        steps.len()
    );
    field(&mut out, "question id", get("question_id"));
    field(&mut out, "video", get("video"));
    field(&mut out, "question", Some(question.clone()));
    let options: Vec<String> =
        l.get("options").and_then(Value::as_array).map_or_else(Vec::new, |o| o.iter().filter_map(text).collect());
    field(&mut out, "options", Some(options.join("\n")));
    field(&mut out, "answer", get("answer"));
    field(&mut out, "prediction", get("prediction"));
    let codes: Vec<String> =
        l.get("error_codes").and_then(Value::as_array).map_or_else(Vec::new, |c| c.iter().filter_map(text).collect());
    field(&mut out, "error codes", Some(codes.join(", ")));
    field(&mut out, "runtime error", get("runtime_error"));
    out.push_str("</dl><ol class=\"steps\">");
    let video = get("video").and_then(|v| lookup.find(&v));
    for st in &steps {
        let g = |k: &str| st.get(k).and_then(text);
        let code = g("error_code").unwrap_or_else(|| "OK".into());
        let class = if code == "OK" { "step" } else { "step err" };
        let stored = match st.get("stored").and_then(Value::as_bool) {
            Some(false) => " · retried (not stored)",
            _ => "",
        };
        let _ = write!(
            out,
            "<li class=\"{class}\"><div class=\"step-head\">step {} · {} · {}{} · reward {}</div><dl class=\"fields\">",
            esc(&g("step").unwrap_or_default()),
            esc(&g("action_type").unwrap_or_else(|| "?".into())),
            esc(&code),
            stored,
            esc(&g("reward").unwrap_or_else(|| "–".into()))
        );
        let parsed = ["observation", "think", "action"].iter().any(|k| st.get(*k).is_some_and(|v| !v.is_null()));
        field(&mut out, "observation", g("observation"));
        field(&mut out, "think", g("think"));
        field(&mut out, "confidence", g("confidence"));
        field(&mut out, "action", g("action"));
        if !parsed {
            field(&mut out, "response", g("response"));
        }
        field(&mut out, "error", g("error_message"));
        field(&mut out, "feedback", g("feedback"));
        out.push_str("</dl>");
        if let Some(p) = g("prompt_text") {
            let _ = write!(out, "<details><summary>prompt</summary><pre>{}</pre></details>", esc(&p));
        }
        if parsed && let Some(r) = g("response") {
            let _ = write!(out, "<details><summary>raw response</summary><pre>{}</pre></details>", esc(&r));
        }
        if let Some(media) = st.get("media").filter(|m| !m.is_null()) {
            step_media(&mut out, media, video.as_deref(), embed);
        }
        out.push_str("</li>");
    }
    out.push_str("</ol></div></details>\n");
    out
}

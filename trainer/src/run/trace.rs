//! Per-step records of an episode, shared by `results.jsonl` (`steps`, one per stored turn),
//! `omnirl infer` (one per physical step, with the prompt text and the environment's feedback)
//! and `omnirl report` (which reads them back).
//!
//! A step record holds: `step` (the physical step, 1-based), `action_type` (`"ERROR"` for a step
//! with an error code), `is_action_valid`, `error_code` (`"OK"` when none), `error_message`,
//! `reward`, `done`, `won`, `confidence`, the response's `observation`, `think` and `action` (the
//! parsed JSON object, `null` when the response is not a JSON object), `response` (the raw text),
//! `media` (what was delivered: `{"kind": "frames", "start", "end", "timestamps"}`, `{"kind":
//! "audio", "start", "end"}`, `{"kind": "clip", "start", "end"}`, or `null`), and the token counts
//! `prompt_tokens` / `response_tokens`.
//!
//! The response is read leniently (code fences stripped, the outermost `{...}` parsed), only to
//! show it; the environment's own parser decides validity. Left out: the environment's
//! per-step timings (the driver does not time single steps).

use rollout::data::Role;
use rollout::episode::validate::linspace;
use rollout::episode::{Message, Part, StepOutcome};
use rollout::trajectory::{Trajectory, Turn};
use serde_json::{Map, Value, json};

/// The parts of a response an agent writes (`{observation, think, confidence, action}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseFields {
    pub observation: Option<String>,
    pub think: Option<String>,
    pub confidence: Option<Value>,
    pub action: Option<Value>,
}

/// Reads the JSON object of a response, if it has one.
pub fn parse_response(text: &str) -> ResponseFields {
    let t = text.trim();
    let (a, b) = (t.find('{'), t.rfind('}'));
    let obj = match (a, b) {
        (Some(a), Some(b)) if a < b => serde_json::from_str::<Value>(&t[a..=b]).ok(),
        _ => None,
    };
    let Some(Value::Object(o)) = obj else { return ResponseFields::default() };
    let text_of = |k: &str| match o.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    ResponseFields {
        observation: text_of("observation"),
        think: text_of("think"),
        confidence: o.get("confidence").cloned(),
        action: o.get("action").cloned(),
    }
}

/// What a step delivered, as the `media` field.
pub fn delivered_media(o: &StepOutcome) -> Value {
    let d = &o.delivered;
    if let Some((s, e)) = d.frames_range.filter(|_| d.n_frames > 0) {
        return json!({"kind": "frames", "start": s, "end": e, "timestamps": linspace(s, e, d.n_frames)});
    }
    if let Some((s, e)) = d.audio_range {
        return json!({"kind": "audio", "start": s, "end": e});
    }
    if let Some((s, e)) = d.clip_range {
        return json!({"kind": "clip", "start": s, "end": e});
    }
    Value::Null
}

/// One step record (see the module docs for the keys).
pub fn step_record(
    outcome: &StepOutcome,
    response: &str,
    prompt_tokens: usize,
    response_tokens: usize,
) -> Map<String, Value> {
    let f = parse_response(response);
    let v = json!({
        "step": outcome.step,
        "action_type": outcome.action_name(),
        "is_action_valid": outcome.is_action_valid,
        "error_code": outcome.error_name(),
        "error_message": outcome.error_message,
        "reward": outcome.reward,
        "done": outcome.done,
        "won": outcome.won,
        "confidence": outcome.confidence,
        "observation": f.observation,
        "think": f.think,
        "action": f.action,
        "response": response,
        "media": delivered_media(outcome),
        "prompt_tokens": prompt_tokens,
        "response_tokens": response_tokens,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The record of a stored turn.
pub fn turn_record(turn: &Turn) -> Value {
    Value::Object(step_record(&turn.outcome, &turn.response, turn.prompt_ids.len(), turn.response_ids.len()))
}

/// The records of a trajectory's stored turns (the `steps` of a `results.jsonl` line).
pub fn stored_steps(t: &Trajectory) -> Value {
    Value::Array(t.turns.iter().map(turn_record).collect())
}

/// Messages as readable text: `[role]` headers, text parts as they are, media parts as
/// `<image NAME>` / `<audio NAME>` / `<video NAME>`.
pub fn render_messages(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        if !out.is_empty() {
            out.push('\n');
        }
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        out.push_str(&format!("[{role}]\n"));
        for p in &m.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Media(media) => out.push_str(&format!("<{} {}>", media.kind.as_str(), media.name)),
            }
        }
        out.push('\n');
    }
    out
}

/// The environment's feedback to the last response: the messages after the last assistant
/// message of `history`, rendered as [`render_messages`] does (without role headers).
pub fn feedback_text(history: &[Message]) -> String {
    let from = history.iter().rposition(|m| m.role == Role::Assistant).map_or(0, |i| i + 1);
    let mut out = String::new();
    for m in &history[from..] {
        for p in &m.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Media(media) => out.push_str(&format!("<{} {}>", media.kind.as_str(), media.name)),
            }
        }
        out.push('\n');
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_leniently() {
        let f = parse_response(
            "```json\n{\"observation\": \"red\", \"think\": \"t\", \"confidence\": 0.5, \"action\": {\"type\": \"answer\", \"content\": \"A\"}}\n```",
        );
        assert_eq!(f.observation.as_deref(), Some("red"));
        assert_eq!(f.think.as_deref(), Some("t"));
        assert_eq!(f.action, Some(json!({"type": "answer", "content": "A"})));
        assert_eq!(parse_response("no json here"), ResponseFields::default());
        assert_eq!(parse_response("[1, 2]"), ResponseFields::default());
    }

    #[test]
    fn feedback_is_what_follows_the_last_assistant_message() {
        let h = vec![
            Message::text(Role::System, "sys"),
            Message::text(Role::User, "q"),
            Message::text(Role::Assistant, "a"),
            Message::text(Role::User, "[ERROR] INVALID_JSON"),
        ];
        assert_eq!(feedback_text(&h), "[ERROR] INVALID_JSON");
        assert!(render_messages(&h[..2]).starts_with("[system]\nsys\n\n[user]\nq"));
    }
}

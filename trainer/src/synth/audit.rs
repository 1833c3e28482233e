//! The second filter of `omnirl synth` ("rationality auditing",
//! docs/reference.md#data-collection), after outcome verification: is each turn's reasoning
//! supported by the evidence it had?
//!
//! * Without a judge, [`rule_check`] drops a trajectory whose answer turn has an empty (or
//!   missing) `observation` or `think`, or that answered without any media ever delivered.
//! * With a judge ([`Auditor`], an OpenAI-compatible endpoint), one request per trajectory lists
//!   every turn's evidence (the text of the feedback it received: the question, media headers
//!   with their time ranges, errors and notices) and its `observation` / `think`, and asks for a
//!   final `VERDICT: SUPPORTED` or `VERDICT: UNSUPPORTED`; "UNSUPPORTED" drops the trajectory,
//!   a reply with neither is an audit failure (also dropped, and counted apart).
//!
//! Left out: sending the pixels and sound to the judge (it sees the text of the feedback, so it
//! checks claims against ranges, timestamps, errors and what was requested at all, not against
//! the content of a frame), and the reference's 0-5 logic score.

use super::SynthError;
use super::teacher::ChatClient;
use rollout::data::Role;
use rollout::episode::{Message, Part};
use rollout::trajectory::{Trajectory, Turn};
use serde_json::{Value, json};

/// The `observation` and `think` of a response (empty strings when missing).
pub fn reasoning(response: &str) -> (String, String) {
    let text = response.trim();
    let parsed = match (text.find('{'), text.rfind('}')) {
        (Some(a), Some(b)) if a < b => serde_json::from_str::<Value>(&text[a..=b]).ok(),
        _ => None,
    };
    let field = |k: &str| {
        parsed.as_ref().and_then(|v| v.get(k)).and_then(Value::as_str).map(|s| s.trim().to_string()).unwrap_or_default()
    };
    (field("observation"), field("think"))
}

/// Whether any stored turn delivered media (frames, audio or a clip).
pub fn used_media(t: &Trajectory) -> bool {
    t.turns.iter().any(|x| {
        let d = &x.outcome.delivered;
        d.n_frames > 0 || d.audio_range.is_some() || d.clip_range.is_some()
    })
}

/// The rule-based check: the drop reason, or `None` to keep.
pub fn rule_check(t: &Trajectory) -> Option<&'static str> {
    let Some(last) = t.turns.last() else { return Some("empty_reasoning") };
    let (observation, think) = reasoning(&last.response);
    if observation.is_empty() || think.is_empty() {
        return Some("empty_reasoning");
    }
    if !used_media(t) {
        return Some("no_media");
    }
    None
}

fn message_text(m: &Message) -> String {
    m.parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.clone(),
            Part::Media(mp) => format!(" [{} {}] ", mp.kind.as_str(), mp.name),
        })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The feedback a turn received: the user messages after the last assistant message of its
/// context.
pub fn evidence(turn: &Turn) -> String {
    let Some(messages) = &turn.messages else { return "(not recorded)".to_string() };
    let start = messages.iter().rposition(|m| m.role == Role::Assistant).map_or(0, |i| i + 1);
    messages[start..].iter().filter(|m| m.role == Role::User).map(message_text).collect::<Vec<_>>().join("\n")
}

/// The audit request's text for `t`.
pub fn audit_prompt(t: &Trajectory) -> String {
    let mut s = String::from(
        "You audit the reasoning of a video question-answering agent. Each turn the agent received \
         evidence (text of the environment's feedback; media appear as [kind name] placeholders whose \
         content you cannot see) and wrote an observation and a thought. A turn is UNSUPPORTED when \
         its observation or thought claims evidence the agent never received (media it did not \
         request, wrong time ranges, ignored errors) or contradicts the evidence; do not flag a \
         description of a frame or sound merely because you cannot see or hear it.\n\n",
    );
    s.push_str(&format!("Question: {}\n", t.spec.question));
    for (i, turn) in t.turns.iter().enumerate() {
        let (observation, think) = reasoning(&turn.response);
        s.push_str(&format!(
            "\nTURN {}\nEVIDENCE:\n{}\nOBSERVATION: {observation}\nTHINK: {think}\nACTION: {}\n",
            i + 1,
            evidence(turn),
            turn.outcome.action_name()
        ));
    }
    s.push_str(
        "\nReply with one line per turn, `TURN k: SUPPORTED` or `TURN k: UNSUPPORTED`, then a last line \
         `VERDICT: SUPPORTED` if every turn is supported, else `VERDICT: UNSUPPORTED`.",
    );
    s
}

/// `Some(true)` for a supported trajectory, `Some(false)` for an unsupported one, `None` when
/// the reply says neither.
pub fn parse_verdict(reply: &str) -> Option<bool> {
    let upper = reply.to_ascii_uppercase();
    if let Some(i) = upper.rfind("VERDICT:") {
        let rest = upper[i + 8..].trim_start();
        if rest.starts_with("UNSUPPORTED") {
            return Some(false);
        }
        if rest.starts_with("SUPPORTED") {
            return Some(true);
        }
    }
    if upper.contains("UNSUPPORTED") {
        Some(false)
    } else if upper.contains("SUPPORTED") {
        Some(true)
    } else {
        None
    }
}

/// The LLM audit.
pub struct Auditor {
    pub client: ChatClient,
    pub requests: usize,
}

impl Auditor {
    /// Whether the judge finds `t`'s reasoning supported.
    pub fn audit(&mut self, t: &Trajectory) -> Result<bool, SynthError> {
        self.requests += 1;
        let reply = self.client.ask(json!([{"role": "user", "content": audit_prompt(t)}]))?;
        parse_verdict(&reply).ok_or_else(|| SynthError::Http {
            url: "audit".into(),
            message: format!("the reply names no verdict: {}", reply.chars().take(200).collect::<String>()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(parse_verdict("TURN 1: SUPPORTED\nVERDICT: SUPPORTED"), Some(true));
        assert_eq!(parse_verdict("TURN 1: UNSUPPORTED\nverdict: unsupported"), Some(false));
        assert_eq!(parse_verdict("TURN 1: SUPPORTED\nTURN 2: UNSUPPORTED"), Some(false));
        assert_eq!(parse_verdict("no idea"), None);
    }

    #[test]
    fn reasoning_fields() {
        let r = r#"```json
{"observation": " saw red ", "think": "", "confidence": 0.9, "action": {"type": "answer", "content": "A"}}
```"#;
        assert_eq!(reasoning(r), ("saw red".to_string(), String::new()));
        assert_eq!(reasoning("not json"), (String::new(), String::new()));
    }
}

//! The timeline expert: a scripted expert for samples whose `extra_info` annotates the video's
//! timeline (the quickstart's generated videos). It takes the sample's planned first action
//! (`extra_info.plan`), then writes an observation of exactly what that action returned, read
//! off the annotated `scenes` (`{colour, start, end, tone, digit}`), a short reasoning step that
//! links the evidence to the answer, and answers with the ground truth.
//!
//! Its trajectories are what the quickstart's SFT stage learns from: every claim in them is
//! supported by media the agent requested in the turn before (memory consolidation keeps only
//! the text), so a model can learn to look, describe and answer.
//!
//! Left out: multi-step plans (one look, then the answer, fits every quickstart question) and
//! timelines other than coloured scenes with sounds.

use crate::episode::EpisodeSpec;
use crate::episode::validate::linspace;
use rewards::QuestionType;
use serde_json::{Map, Value, json};

/// One annotated scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub colour: String,
    pub start: f64,
    pub end: f64,
    pub tone: Option<String>,
    pub digit: Option<u64>,
}

/// A sample's annotated timeline and planned first action.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub scenes: Vec<Scene>,
    pub plan: Map<String, Value>,
}

impl Timeline {
    /// From a sample's `extra_info`; `None` when it carries no usable `scenes` and `plan`.
    pub fn from_annotations(extra: &Map<String, Value>) -> Option<Timeline> {
        let scenes = extra
            .get("scenes")?
            .as_array()?
            .iter()
            .map(|s| {
                Some(Scene {
                    colour: s.get("colour")?.as_str()?.to_string(),
                    start: s.get("start")?.as_f64()?,
                    end: s.get("end")?.as_f64()?,
                    tone: s.get("tone").and_then(Value::as_str).map(str::to_string),
                    digit: s.get("digit").and_then(Value::as_u64),
                })
            })
            .collect::<Option<Vec<Scene>>>()?;
        let plan = extra.get("plan")?.as_object()?.clone();
        (!scenes.is_empty() && plan.get("type").and_then(Value::as_str).is_some()).then_some(Timeline { scenes, plan })
    }

    /// The scene showing at `t` (the last one at or after its end).
    pub fn scene_at(&self, t: f64) -> &Scene {
        let last = &self.scenes[self.scenes.len() - 1];
        self.scenes.iter().find(|s| s.start <= t && t < s.end).unwrap_or(last)
    }

    fn plan_number(&self, key: &str) -> f64 {
        self.plan.get(key).and_then(Value::as_f64).unwrap_or(0.0)
    }

    fn plan_type(&self) -> &str {
        self.plan.get("type").and_then(Value::as_str).unwrap_or("")
    }

    /// What the planned action returned, in words, and the salient attribute (a colour, a
    /// tone or a digit) when the evidence is a single moment.
    pub fn evidence(&self) -> (String, Option<String>) {
        let (start, end) = (self.plan_number("start"), self.plan_number("end"));
        match self.plan_type() {
            "get_frames" => {
                let num = self.plan.get("num").and_then(Value::as_u64).unwrap_or(1).max(1) as usize;
                let seen: Vec<(f64, &str)> =
                    linspace(start, end, num).into_iter().map(|t| (t, self.scene_at(t).colour.as_str())).collect();
                let text = seen.iter().map(|(t, c)| format!("{t:.1}s {c}")).collect::<Vec<_>>().join("; ");
                let single = (num == 1).then(|| seen[0].1.to_string());
                (format!("{text}."), single)
            }
            _ => {
                let scene = self.scene_at((start + end) / 2.0);
                match (&scene.tone, scene.digit) {
                    (_, Some(d)) => (format!("A voice says {d}."), Some(d.to_string())),
                    (Some(tone), None) => (format!("A {tone} tone."), Some(tone.clone())),
                    (None, None) => ("Silence.".to_string(), None),
                }
            }
        }
    }

    /// The planned action as JSON text, keys in reading order (`type` first).
    fn plan_text(&self) -> String {
        let mut keys: Vec<&str> = vec!["type", "start", "end", "num"];
        keys.extend(self.plan.keys().map(String::as_str).filter(|k| !["type", "start", "end", "num"].contains(k)));
        ordered_object(keys.iter().filter_map(|k| self.plan.get(*k).map(|v| (*k, v.to_string()))))
    }

    /// The expert's response at `step` (1 = look, later = answer with `answer`). Keys are in the
    /// order a reader reasons in (observation, think, confidence, action), so a model trained on
    /// these responses writes its evidence before its answer.
    pub fn respond(&self, spec: &EpisodeSpec, step: u32, answer: &str) -> String {
        if step <= 1 {
            let think = match (self.plan_type(), self.plan.get("num").and_then(Value::as_u64)) {
                ("get_frames", Some(1)) => "Look at the asked moment.",
                ("get_frames", _) => "Scan the whole video.",
                _ => "Listen to the asked moment.",
            };
            return response("Nothing seen yet.", think, "0.1", self.plan_text());
        }
        let (observation, attribute) = self.evidence();
        let think = match (spec.qtype, attribute) {
            // "It is {a}": the attribute follows a space, so it is the same token as in the
            // observation (a byte-level BPE splits "\"purple" differently from " purple").
            (QuestionType::Mcq, Some(a)) => format!("It is {a}, option {answer}."),
            (QuestionType::Tr, _) => "The frames give the range.".to_string(),
            (QuestionType::Size, _) => "The frames give the length.".to_string(),
            (QuestionType::Num, Some(_)) => "The voice gives the digit.".to_string(),
            (QuestionType::Num, None) => "Count the colours.".to_string(),
            _ => "The evidence gives the answer.".to_string(),
        };
        let action = ordered_object([("type", json!("answer").to_string()), ("content", json!(answer).to_string())]);
        response(&observation, &think, "0.9", action)
    }
}

/// `{"k": v, ...}` with the keys in the given order (values already JSON).
fn ordered_object<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> String {
    let body: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{}: {v}", json!(k))).collect();
    format!("{{{}}}", body.join(", "))
}

fn response(observation: &str, think: &str, confidence: &str, action: String) -> String {
    ordered_object([
        ("observation", json!(observation).to_string()),
        ("think", json!(think).to_string()),
        ("confidence", confidence.to_string()),
        ("action", action),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(plan: Value) -> Timeline {
        let extra = json!({
            "scenes": [
                {"colour": "green", "start": 0.0, "end": 3.0, "tone": "low", "digit": null},
                {"colour": "red", "start": 3.0, "end": 7.0, "tone": null, "digit": 4},
            ],
            "plan": plan,
        });
        Timeline::from_annotations(extra.as_object().unwrap()).unwrap()
    }

    #[test]
    fn evidence_describes_exactly_the_requested_media() {
        let cases = [
            (json!({"type": "get_frames", "start": 2.5, "end": 2.5, "num": 1}), "2.5s green.", Some("green")),
            (
                json!({"type": "get_frames", "start": 0.0, "end": 7.0, "num": 3}),
                "0.0s green; 3.5s red; 7.0s red.",
                None,
            ),
            (json!({"type": "get_audio", "start": 0.0, "end": 2.0}), "A low tone.", Some("low")),
            (json!({"type": "get_audio", "start": 4.0, "end": 6.0}), "A voice says 4.", Some("4")),
        ];
        for (plan, text, attr) in cases {
            let (got, a) = timeline(plan.clone()).evidence();
            assert_eq!(got, text, "{plan}");
            assert_eq!(a.as_deref(), attr, "{plan}");
        }
    }

    #[test]
    fn responses_write_the_evidence_before_the_answer() {
        let t = timeline(json!({"type": "get_frames", "start": 2.5, "end": 2.5, "num": 1}));
        let spec = EpisodeSpec {
            question_id: "q".into(),
            video: "v.mp4".into(),
            question_type: "MCQ_Colour".into(),
            qtype: QuestionType::Mcq,
            question: "What colour fills the screen at 2.5 seconds?".into(),
            options: vec!["A. red".into(), "B. green".into()],
            answer: "B".into(),
            meta: crate::episode::VideoMeta { duration: 7.0, fps: Some(4.0), has_audio: true },
            data_source: None,
            annotations: None,
        };
        assert_eq!(
            t.respond(&spec, 1, "B"),
            r#"{"observation": "Nothing seen yet.", "think": "Look at the asked moment.", "confidence": 0.1, "action": {"type": "get_frames", "start": 2.5, "end": 2.5, "num": 1}}"#
        );
        assert_eq!(
            t.respond(&spec, 2, "B"),
            r#"{"observation": "2.5s green.", "think": "It is green, option B.", "confidence": 0.9, "action": {"type": "answer", "content": "B"}}"#
        );
    }

    #[test]
    fn incomplete_annotations_are_not_a_timeline() {
        for extra in
            [json!({}), json!({"scenes": [], "plan": {"type": "get_frames"}}), json!({"scenes": [{"colour": 1}]})]
        {
            assert!(Timeline::from_annotations(extra.as_object().unwrap()).is_none(), "{extra}");
        }
    }
}

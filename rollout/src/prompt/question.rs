//! The first user message (docs/reference.md#first-user-message): the META block, the question
//! and the answer-format guide of its type, byte for byte as the reference builds it (the
//! checkpoints were trained on these strings, including the SIZE guide's "e.g. e.g.," and the
//! U+2026 ellipsis).
//!
//! `Video META:\n- duration_seconds: {D}\n- fps: {F}\n- has_audio: {H}\n\n` + `Question: ` +
//! question + guide, where `D` and `F` are floored (not rounded) to two decimals and `H` is
//! `True`/`False`. The step notice is a separate text part appended by the episode.
//!
//! Left out: nothing; the reference raises on an unknown type, which `QuestionType` makes
//! impossible here.

use crate::episode::format::{floor2, py_bool};
use crate::episode::validate::VideoMeta;
use rewards::QuestionType;

/// The text of the first user message (without the notice).
pub fn question_text(qtype: QuestionType, question: &str, options: &[String], meta: &VideoMeta) -> String {
    let fps = meta.fps.filter(|f| f.is_finite());
    let mut text = format!(
        "Video META:\n- duration_seconds: {}\n- fps: {}\n- has_audio: {}\n\nQuestion: {question}",
        floor2(Some(meta.duration)),
        floor2(fps),
        py_bool(meta.has_audio),
    );
    match qtype {
        QuestionType::Mcq => {
            text.push_str("\nOptions:\n");
            text.push_str(&options.join("\n"));
            text.push_str("\nWhen answering, set action.content to ONE uppercase letter (A, B, C \u{2026}).");
        }
        QuestionType::Tr => text.push_str(
            "\nWhen answering, set action.content to a JSON array of timestamp pairs such as [[10.5, 20.0]].",
        ),
        QuestionType::Ff => text.push_str("\nWhen answering, set action.content to **your free-form answer text**."),
        QuestionType::Num => {
            text.push_str("\nWhen answering, set action.content to **ONE number**, e.g. 42 or 3.14159.")
        }
        QuestionType::Size => {
            text.push_str("\nWhen answering, set action.content to **ONE number**, e.g. e.g., 203 or 10.3.")
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_example() {
        // The first user message of data/examples/sft.jsonl (teacher run of the reference).
        let meta = VideoMeta { duration: 24.0, fps: Some(25.0), has_audio: true };
        let options: Vec<String> =
            ["A. Opens the oven", "B. Turns off the stove", "C. Answers the phone", "D. Leaves the kitchen"]
                .map(String::from)
                .to_vec();
        let got =
            question_text(QuestionType::Mcq, "What does the cook do right after the timer rings?", &options, &meta);
        assert_eq!(
            got,
            "Video META:\n- duration_seconds: 24.00\n- fps: 25.00\n- has_audio: True\n\nQuestion: What does the cook do right \
             after the timer rings?\nOptions:\nA. Opens the oven\nB. Turns off the stove\nC. Answers the phone\nD. Leaves \
             the kitchen\nWhen answering, set action.content to ONE uppercase letter (A, B, C \u{2026})."
        );
    }

    #[test]
    fn guides_and_meta_flooring() {
        let meta = VideoMeta { duration: 92.239, fps: Some(29.97002997), has_audio: false };
        let head = "Video META:\n- duration_seconds: 92.23\n- fps: 29.97\n- has_audio: False\n\nQuestion: Q";
        let cases = [
            (
                QuestionType::Tr,
                "\nWhen answering, set action.content to a JSON array of timestamp pairs such as [[10.5, 20.0]].",
            ),
            (QuestionType::Ff, "\nWhen answering, set action.content to **your free-form answer text**."),
            (QuestionType::Num, "\nWhen answering, set action.content to **ONE number**, e.g. 42 or 3.14159."),
            (QuestionType::Size, "\nWhen answering, set action.content to **ONE number**, e.g. e.g., 203 or 10.3."),
        ];
        for (qt, guide) in cases {
            assert_eq!(question_text(qt, "Q", &[], &meta), format!("{head}{guide}"), "{qt}");
        }
        let unknown_fps = VideoMeta { fps: None, ..meta };
        assert!(question_text(QuestionType::Num, "Q", &[], &unknown_fps).contains("- fps: unknown\n"));
    }
}

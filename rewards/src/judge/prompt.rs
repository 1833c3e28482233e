//! The judge prompt and the parsing of its reply (docs/reference.md#reward-judge).
//!
//! The prompt has the reference's shape (instruction, seven worked examples each with
//! `[Question]`, `[Standard Answer]`, `[Model_answer]` and `Judgement: 0|1`, then the test item
//! ending with `Judgement:`), in our own words and with our own examples.
//!
//! Left out: the reference's exact wording (ours is paraphrased on purpose).

const INSTRUCTION: &str = "You are checking an answer against a reference. For each item, [Question] is the \
question, [Standard Answer] is the correct answer and [Model_answer] is the answer a model gave.\n\
Decide whether [Model_answer] agrees with [Standard Answer]. They agree when they mean the same thing, \
even if one is shorter or worded differently (for example, 'green' and 'the mug is green').\n\
Write Judgement 1 if they agree and Judgement 0 if they do not. Output only the judgement, nothing else.\n\n";

/// (question, standard answer, model answer, judgement)
const EXAMPLES: [(&str, &str, &str, u8); 7] = [
    ("What colour is the mug on the desk?", "The mug on the desk is green.", "green", 1),
    ("Where does the cyclist turn at the crossing?", "The cyclist turns right at the crossing.", "right", 1),
    ("Is the door open at the end of the clip?", "Yes, the door is open at the end.", "Yes", 1),
    ("Does the dog catch the ball?", "No, the ball lands in the pond.", "no", 1),
    ("Who opens the window?", "The woman in the red coat opens the window.", "A woman opens the window.", 1),
    ("Is the kettle both steaming and whistling?", "Yes, it is steaming and whistling.", "No.", 0),
    (
        "What is the man holding in his left hand?",
        "He is holding a phone in his left hand.",
        "He is holding a cup in his left hand.",
        0,
    ),
];

/// The full judge prompt for one item.
pub fn build_prompt(question: &str, standard_answer: &str, model_answer: &str) -> String {
    let mut p = String::with_capacity(2048 + question.len() + standard_answer.len() + model_answer.len());
    p.push_str(INSTRUCTION);
    for (q, gt, pred, j) in EXAMPLES {
        p.push_str(&format!("[Question]: {q}\n[Standard Answer]: {gt}\n[Model_answer] : {pred}\nJudgement: {j}\n\n"));
    }
    p.push_str(&format!(
        "[Question]: {question}\n[Standard Answer]: {standard_answer}\n[Model_answer] : {model_answer}\nJudgement:"
    ));
    p
}

/// The reference's reading of a judge reply: when it contains `Judgement:`, the text after the
/// last occurrence scores 1.0 if it contains `1`, else 0.0 (whether or not it contains `0`).
/// Without the marker, the reply must be exactly `1` (1.0); anything else is 0.0. Unlike the
/// reference we strip surrounding whitespace first in that case (`"1\n"` -> 1.0; the
/// reference gives 0.0).
pub fn parse_judgement(reply: &str) -> f64 {
    let tail = match reply.rfind("Judgement:") {
        Some(at) => {
            return if reply[at + "Judgement:".len()..].contains('1') { 1.0 } else { 0.0 };
        }
        None => reply.trim(),
    };
    if tail == "1" { 1.0 } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_shape() {
        let p = build_prompt("Q?", "GT", "PRED");
        assert!(p.ends_with("[Question]: Q?\n[Standard Answer]: GT\n[Model_answer] : PRED\nJudgement:"));
        assert_eq!(p.matches("[Standard Answer]:").count(), 8);
        assert_eq!(p.matches("\nJudgement: 1\n").count(), 5);
        assert_eq!(p.matches("\nJudgement: 0\n").count(), 2);
    }

    #[test]
    fn judgement_parsing_table() {
        // Hand-evaluated with the reference's rules.
        let cases = [
            ("1", 1.0),
            ("0", 0.0),
            ("Judgement: 1", 1.0),
            ("Judgement: 0", 0.0),
            ("Judgement:1", 1.0),
            ("blah Judgement: 0 ... Judgement: 1", 1.0), // last marker wins
            ("Judgement: 1 ... Judgement: 0", 0.0),
            ("Judgement: 10", 1.0), // contains '1'
            ("Judgement: yes", 0.0),
            ("Judgement:", 0.0),
            ("yes", 0.0),
            ("1.", 0.0),   // not exactly "1"
            (" 1\n", 1.0), // reference: 0.0 (we strip)
            ("", 0.0),
            ("judgement: 1", 0.0), // marker is case-sensitive; not "1"
        ];
        for (reply, want) in cases {
            assert_eq!(parse_judgement(reply), want, "{reply:?}");
        }
    }
}

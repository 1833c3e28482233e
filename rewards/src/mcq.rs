//! MCQ scoring: option-letter exact match (docs/reference.md#reward-mcq).
//!
//! The reference takes `answer[0].strip().upper()` (the first character of the stored answer)
//! and compares it with `content.strip().upper()`. We strip before taking the first character
//! and unwrap a stringified one-element list (`"['B']"`), see the crate docs.
//!
//! Left out: any leniency the reference does not have (`"B."` or `"(B)"` are wrong answers,
//! as in the reference).

/// Python's `str.isspace()`: Unicode White_Space plus the information separators
/// U+001C..U+001F, which Python also strips.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no arguments.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// `"['B']"`, `"[\"B\"]"` (a list printed by Python's `str(list)` or as JSON) -> `"B"`.
fn unwrap_single_item_list(s: &str) -> Option<&str> {
    let inner = py_strip(s.strip_prefix('[')?.strip_suffix(']')?);
    let quote = inner.chars().next().filter(|q| *q == '\'' || *q == '"')?;
    let item = inner.strip_prefix(quote)?.strip_suffix(quote)?;
    (!item.contains(quote)).then_some(item)
}

/// The MCQ ground-truth letter, upper-cased: the stored answer stripped, a stringified
/// one-item list unwrapped, then its first character. `None` when nothing is left.
/// `" B"` -> `'B'` (the reference gets `""` here), `"b"` -> `'B'`, `"['C']"` -> `'C'`.
pub fn mcq_ground_truth(answer: &str) -> Option<char> {
    let stripped = py_strip(answer);
    let text = unwrap_single_item_list(stripped).map_or(stripped, py_strip);
    let first = text.chars().next()?;
    let mut upper = first.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => Some(u),
        _ => Some(first), // a letter whose upper case is several characters (e.g. 'ß')
    }
}

/// MCQ reward: 1.0 when the stripped, upper-cased prediction equals the ground-truth letter,
/// else 0.0; 0.0 when the ground truth is empty (as the reference).
pub fn mcq_score(prediction: &str, answer: &str) -> f64 {
    let Some(gt) = mcq_ground_truth(answer) else {
        return 0.0;
    };
    let pred = py_strip(prediction);
    let mut pred_upper = pred.chars().flat_map(char::to_uppercase);
    let mut gt_upper = gt.to_uppercase();
    loop {
        match (pred_upper.next(), gt_upper.next()) {
            (None, None) => return 1.0,
            (Some(a), Some(b)) if a == b => {}
            _ => return 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth_letter() {
        // Expected values by hand from the rule: strip, unwrap ['X'], first char, upper.
        let cases = [
            ("B", Some('B')),
            ("b", Some('B')),
            (" B", Some('B')), // reference: " "[0].strip() == "" (deviation)
            ("\tC \n", Some('C')),
            ("D. a dog", Some('D')),
            ("['B']", Some('B')), // reference: "[" (deviation, docs/reference.md#mcq-ground-truth)
            ("[\"c\"]", Some('C')),
            ("[ 'A' ]", Some('A')),
            ("['A', 'B']", Some('[')), // not a single item: taken literally
            ("", None),
            ("   ", None),
            ("\u{1c}A", Some('A')), // Python strips U+001C too
            ("[]", Some('[')),
        ];
        for (answer, want) in cases {
            assert_eq!(mcq_ground_truth(answer), want, "{answer:?}");
        }
    }

    #[test]
    fn exact_letter_match() {
        // (prediction, stored answer, reward) — reference: content.strip().upper() == gt.
        let cases = [
            ("B", "B", 1.0),
            (" b ", "B", 1.0),
            ("B", "b", 1.0),
            ("B.", "B", 0.0),
            ("(B)", "B", 0.0),
            ("A", "B", 0.0),
            ("", "B", 0.0),
            ("BB", "B", 0.0),
            ("B", "Bird", 1.0),              // only the first character of the answer counts
            ("B", " B", 1.0),                // reference: 0.0 (deviation: leading space)
            ("", " B", 0.0),                 // reference: 1.0 ("" == "") (deviation)
            ("", "", 0.0),                   // empty ground truth scores 0, as the reference
            ("B", "['B']", 1.0),             // reference: 0.0 (deviation)
            ("SS", "ß", 1.0),                // Python: "ß".upper() == "SS"
            ("\u{3000}C\u{3000}", "C", 1.0), // ideographic space is stripped by both
        ];
        for (pred, answer, want) in cases {
            assert_eq!(mcq_score(pred, answer), want, "pred {pred:?} answer {answer:?}");
        }
    }
}

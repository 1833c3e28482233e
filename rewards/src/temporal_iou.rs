//! TR scoring: span parsing with the reference's accepted shapes (`[]`, `null`, `[s, e]`,
//! `[[s, e], ...]`), span merging and temporal IoU (`TemporalIoU`).
//!
//! Reference: `_spans_to_ndarray`, `_merge_spans`, `overlap_ratio` and
//! `_score_temporal_prediction` in `video_env.py` (docs/reference.md#reward-tr). Deviations
//! (reversed ground truth, no `1e-12` in the denominator, booleans/strings as bounds) are listed
//! with examples in the crate docs and in docs/reference.md#iou-semantics.
//!
//! Left out: numpy-array inputs (JSON has none) and numpy's pairwise summation of span lengths,
//! which the reference uses once a merged set has 8 or more spans; we sum left to right, so
//! results there can differ from the reference in the last bits (around 1e-16 relative).

use crate::error::{RewardError, excerpt};
use crate::pyjson::{self, PyValue};
use serde_json::Value;

/// One closed time interval in seconds. `start > end` is representable (a reversed span) so
/// that callers can see and judge it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeSpan {
    pub start: f64,
    pub end: f64,
}

impl TimeSpan {
    pub fn new(start: f64, end: f64) -> TimeSpan {
        TimeSpan { start, end }
    }

    /// `start > end`.
    pub fn is_reversed(&self) -> bool {
        self.start > self.end
    }

    /// `end - start` (negative for a reversed span).
    pub fn len(&self) -> f64 {
        self.end - self.start
    }

    /// Zero length (`start == end`).
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// A decoded JSON node as span checking sees it; implemented for `serde_json::Value` and for
/// our Python-compatible decoder.
enum Node<'a, T> {
    Null,
    List(&'a [T]),
    Num(f64),
    Other(&'static str),
}

trait JsonNode: Sized {
    fn node(&self) -> Node<'_, Self>;
}

impl JsonNode for Value {
    fn node(&self) -> Node<'_, Self> {
        match self {
            Value::Null => Node::Null,
            Value::Array(items) => Node::List(items),
            Value::Number(n) => n.as_f64().map_or(Node::Other("number"), Node::Num),
            Value::Bool(_) => Node::Other("boolean"),
            Value::String(_) => Node::Other("string"),
            Value::Object(_) => Node::Other("object"),
        }
    }
}

impl JsonNode for PyValue {
    fn node(&self) -> Node<'_, Self> {
        match self {
            PyValue::Null => Node::Null,
            PyValue::List(items) => Node::List(items),
            PyValue::Int(i) => Node::Num(*i as f64),
            PyValue::Float(x) => Node::Num(*x),
            PyValue::Bool(_) => Node::Other("boolean"),
            PyValue::Str(_) => Node::Other("string"),
            PyValue::Object(_) => Node::Other("object"),
        }
    }
}

fn describe<T: JsonNode>(v: &T) -> &'static str {
    match v.node() {
        Node::Null => "null",
        Node::List(_) => "list",
        Node::Num(_) => "number",
        Node::Other(kind) => kind,
    }
}

fn bound<T: JsonNode>(v: &T, span_index: usize) -> Result<f64, RewardError> {
    match v.node() {
        Node::Num(x) if x.is_finite() => Ok(x),
        Node::Num(_) => Err(RewardError::SpanFormat(format!("span {span_index} contains NaN or Inf"))),
        _ => Err(RewardError::SpanFormat(format!("span {span_index}: bounds must be numbers, got a {}", describe(v)))),
    }
}

fn spans_from<T: JsonNode>(v: &T) -> Result<Vec<TimeSpan>, RewardError> {
    let items = match v.node() {
        Node::Null => return Ok(Vec::new()),
        Node::List(items) => items,
        _ => {
            return Err(RewardError::SpanFormat(format!(
                "invalid span format: expected [], [s, e] or [[s, e], ...], got a {}",
                describe(v)
            )));
        }
    };
    let Some(first) = items.first() else {
        return Ok(Vec::new());
    };
    if matches!(first.node(), Node::List(_)) {
        // Nested: every element must be a two-element list of numbers.
        let mut spans = Vec::with_capacity(items.len());
        for (k, item) in items.iter().enumerate() {
            match item.node() {
                Node::List([s, e]) => spans.push(TimeSpan::new(bound(s, k)?, bound(e, k)?)),
                Node::List(other) => {
                    return Err(RewardError::SpanFormat(format!("span {k} has {} elements, expected 2", other.len())));
                }
                _ => {
                    return Err(RewardError::SpanFormat(format!("span {k} is a {}, expected [s, e]", describe(item))));
                }
            }
        }
        return Ok(spans);
    }
    match items {
        [s, e] => Ok(vec![TimeSpan::new(bound(s, 0)?, bound(e, 0)?)]),
        _ => Err(RewardError::SpanFormat(format!(
            "invalid span format: a flat span needs exactly 2 numbers, got {} elements",
            items.len()
        ))),
    }
}

/// Spans from an already-decoded JSON value: `[]` and `null` -> no span; `[[s, e], ...]`
/// nested; `[s, e]` flat. Anything else, non-numeric bounds (booleans and strings included) or
/// non-finite bounds -> `SPAN_FORMAT`. Reversed spans are returned as they are.
pub fn parse_spans_value(v: &Value) -> Result<Vec<TimeSpan>, RewardError> {
    spans_from(v)
}

fn decode_prediction(content: &str) -> Result<PyValue, RewardError> {
    pyjson::loads(content).map_err(|e| RewardError::AnswerJsonParse(format!("{e} in {:?}", excerpt(content, 80))))
}

/// Decodes a ground-truth string and checks that it is a list (`GT_JSON_PARSE` otherwise).
fn decode_ground_truth(answer: &str) -> Result<PyValue, RewardError> {
    let v = pyjson::loads(answer).map_err(|e| {
        RewardError::GtJsonParse(format!(
            "TR ground truth must be a JSON list of spans, got unparsable text {:?} ({e})",
            excerpt(answer, 80)
        ))
    })?;
    if !matches!(v, PyValue::List(_)) {
        return Err(RewardError::GtJsonParse(format!(
            "TR ground truth must be a list, but got a {}: {}",
            describe(&v),
            excerpt(answer, 80)
        )));
    }
    Ok(v)
}

/// A TR prediction (the `content` of the answer action): JSON as Python's `json.loads` reads
/// it (so `NaN`/`Infinity` are JSON) -> `ANSWER_JSON_PARSE` when not JSON, then the span shapes
/// of [`parse_spans_value`] -> `SPAN_FORMAT`. Reversed spans are returned as they are (they
/// score 0, see [`TemporalIoU::score`]).
pub fn parse_predicted_spans(content: &str) -> Result<Vec<TimeSpan>, RewardError> {
    spans_from(&decode_prediction(content)?)
}

/// Ground-truth span string as stored in the data (`"[[1.4, 40.066]]"`): not JSON or not a
/// list -> `GT_JSON_PARSE`; malformed spans -> `SPAN_FORMAT`; a reversed span (`start > end`)
/// -> `GT_JSON_PARSE` (our deviation: the reference scores such data with rewards above 1).
pub fn parse_ground_truth_spans(answer: &str) -> Result<Vec<TimeSpan>, RewardError> {
    checked_ground_truth(spans_from(&decode_ground_truth(answer)?)?)
}

/// Ground truth stored as a JSON value rather than a string: a string is parsed with
/// [`parse_ground_truth_spans`]; a list is read directly; anything else is `GT_JSON_PARSE`.
pub fn parse_ground_truth_value(answer: &Value) -> Result<Vec<TimeSpan>, RewardError> {
    match answer {
        Value::String(s) => parse_ground_truth_spans(s),
        Value::Array(_) => checked_ground_truth(spans_from(answer)?),
        other => Err(not_a_list(other)),
    }
}

fn not_a_list(v: &Value) -> RewardError {
    RewardError::GtJsonParse(format!("TR ground truth must be a list, but got a {}", describe(v)))
}

/// Scores a TR prediction against a ground-truth string, checking in the reference's order:
/// prediction JSON (`ANSWER_JSON_PARSE`), ground truth is a list (`GT_JSON_PARSE`), predicted
/// spans then ground-truth spans (`SPAN_FORMAT`), then (ours) reversed ground truth.
pub fn score_temporal(prediction: &str, answer: &str) -> Result<TemporalIoU, RewardError> {
    let p = decode_prediction(prediction)?;
    let g = decode_ground_truth(answer)?;
    finish(&p, &g)
}

/// [`score_temporal`] with the ground truth as a JSON value (a string or a list).
pub fn score_temporal_value(prediction: &str, answer: &Value) -> Result<TemporalIoU, RewardError> {
    let p = decode_prediction(prediction)?;
    match answer {
        Value::String(s) => finish(&p, &decode_ground_truth(s)?),
        Value::Array(_) => finish(&p, answer),
        other => Err(not_a_list(other)),
    }
}

fn finish<T: JsonNode>(p: &PyValue, g: &T) -> Result<TemporalIoU, RewardError> {
    let pred = spans_from(p)?;
    let gt = checked_ground_truth(spans_from(g)?)?;
    Ok(TemporalIoU::score(&pred, &gt))
}

fn checked_ground_truth(spans: Vec<TimeSpan>) -> Result<Vec<TimeSpan>, RewardError> {
    if let Some((k, s)) = spans.iter().enumerate().find(|(_, s)| s.is_reversed()) {
        return Err(RewardError::GtJsonParse(format!(
            "TR ground-truth span {k} is reversed: [{}, {}] has start > end",
            s.start, s.end
        )));
    }
    Ok(spans)
}

/// Sorts by start and merges spans that touch or overlap (`next.start <= current.end`), as
/// the reference's `_merge_spans`. Input spans must not be reversed.
pub fn merge_spans(spans: &[TimeSpan]) -> Vec<TimeSpan> {
    let mut sorted = spans.to_vec();
    sorted.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut merged: Vec<TimeSpan> = Vec::with_capacity(sorted.len());
    for s in sorted {
        match merged.last_mut() {
            Some(cur) if s.start <= cur.end => cur.end = cur.end.max(s.end),
            _ => merged.push(s),
        }
    }
    merged
}

/// Result of scoring one TR prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemporalIoU {
    /// Intersection over union of the merged span sets, in `[0, 1]`.
    pub iou: f64,
    /// The prediction contained a reversed span and was rejected as a whole (IoU 0). The
    /// reference suppresses the optional format reward for such answers.
    pub rejected: bool,
}

impl TemporalIoU {
    /// Scores predicted spans against ground-truth spans. A reversed predicted span rejects
    /// the whole prediction (IoU 0, `rejected`); otherwise [`temporal_iou`].
    pub fn score(pred: &[TimeSpan], gt: &[TimeSpan]) -> TemporalIoU {
        if pred.iter().any(TimeSpan::is_reversed) {
            return TemporalIoU { iou: 0.0, rejected: true };
        }
        TemporalIoU { iou: temporal_iou(pred, gt), rejected: false }
    }

    /// `won` as the reference defines it for TR: IoU >= 0.5.
    pub fn won(&self) -> bool {
        self.iou >= 0.5
    }
}

/// Temporal IoU of two span sets: both empty -> 1; one empty -> 0; otherwise merge each set,
/// `inter = sum of pairwise overlaps`, `union = len(P) + len(G) - inter`, `inter / union`.
/// When the union is 0 (only zero-length spans on both sides) the sets score 1 if they mark
/// the same instants and 0 otherwise. Reversed spans are clamped to zero length so that the
/// result stays in `[0, 1]` for any input; [`TemporalIoU::score`] rejects reversed
/// predictions before getting here.
pub fn temporal_iou(pred: &[TimeSpan], gt: &[TimeSpan]) -> f64 {
    match (pred.is_empty(), gt.is_empty()) {
        (true, true) => return 1.0,
        (true, false) | (false, true) => return 0.0,
        (false, false) => {}
    }
    // IoU is scale-invariant; spans near the f64 limits are scaled down by an exact power of
    // two so that lengths and sums cannot overflow to infinity.
    let huge = pred.iter().chain(gt).any(|s| s.start.abs().max(s.end.abs()) > 1e300);
    let scale = if huge { f64::powi(2.0, -64) } else { 1.0 };
    let prep = |s: &TimeSpan| TimeSpan::new(s.start * scale, (s.end * scale).max(s.start * scale));
    let p = merge_spans(&pred.iter().map(prep).collect::<Vec<_>>());
    let g = merge_spans(&gt.iter().map(prep).collect::<Vec<_>>());
    // Overlaps of two sorted disjoint sets, visited in (p, g) lexicographic order: the same
    // terms, in the same order, as the reference's double loop (its other terms are zeros).
    let mut inter = 0.0;
    let (mut i, mut j) = (0, 0);
    while i < p.len() && j < g.len() {
        let overlap = p[i].end.min(g[j].end) - p[i].start.max(g[j].start);
        if overlap > 0.0 {
            inter += overlap;
        }
        if p[i].end < g[j].end {
            i += 1;
        } else if g[j].end < p[i].end {
            j += 1;
        } else {
            i += 1;
            j += 1;
        }
    }
    let lp: f64 = p.iter().map(TimeSpan::len).sum();
    let lg: f64 = g.iter().map(TimeSpan::len).sum();
    let union = lp + lg - inter;
    if union <= 0.0 {
        return if p == g { 1.0 } else { 0.0 };
    }
    let iou = inter / union;
    if iou.is_nan() { 0.0 } else { iou.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests;

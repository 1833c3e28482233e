//! The report's figures as inline SVG: per-stage line charts of the metrics in
//! `<stage>/metrics.jsonl` (one `{"step": N, "<name>": value, ...}` object per logged step), and
//! a grouped bar chart of accuracy per question type for each before/after figure set.
//!
//! Each line chart is an `<svg class="chart">` carrying its points in `data-xs` / `data-ys` and
//! its plot area in `data-plot` / `data-range`, so the page's script can add a hover read-out;
//! the chart itself needs no script. Series longer than [`MAX_POINTS`] are thinned (every k-th
//! point, the last always kept). Left out: log scales, smoothing, and several series per chart.

use super::html::esc;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Most points drawn per series.
pub const MAX_POINTS: usize = 400;
const W: f64 = 360.0;
const H: f64 = 200.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// The metrics of one stage: each scalar name's `(step, value)` points in logging order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub names: Vec<String>,
    pub points: BTreeMap<String, Vec<(f64, f64)>>,
    /// Lines that did not parse (a torn last line, for instance).
    pub bad_lines: usize,
}

/// Reads a `metrics.jsonl` text.
pub fn parse_metrics(text: &str) -> Series {
    let mut s = Series::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
            s.bad_lines += 1;
            continue;
        };
        let Some(step) = obj.get("step").and_then(Value::as_f64) else {
            s.bad_lines += 1;
            continue;
        };
        for (k, v) in &obj {
            if k == "step" || k == "time" {
                continue;
            }
            let Some(v) = v.as_f64().filter(|v| v.is_finite()) else { continue };
            if !s.points.contains_key(k) {
                s.names.push(k.clone());
            }
            s.points.entry(k.clone()).or_default().push((step, v));
        }
    }
    s
}

/// Short decimal text of a value.
pub fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    let digits = if a >= 100.0 {
        1
    } else if a >= 1.0 {
        3
    } else {
        4
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if s == "-0" { "0".into() } else { s }
}

fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let k = points.len().div_ceil(MAX_POINTS);
    let mut out: Vec<(f64, f64)> = points.iter().step_by(k).copied().collect();
    if let Some(&last) = points.last()
        && out.last() != Some(&last)
    {
        out.push(last);
    }
    out
}

/// Range padded so that a constant series still has height.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    (lo, hi)
}

/// One line chart (`<figure>` with an `<svg class="chart">`); empty `points` gives a note.
pub fn line_chart(title: &str, points: &[(f64, f64)]) -> String {
    let pts = thin(points);
    if pts.is_empty() {
        return format!("<figure class=\"chart-box\"><figcaption>{}</figcaption><p>no points</p></figure>", esc(title));
    }
    let (x0, x1) = span(pts.iter().map(|p| p.0));
    let (y0, y1) = span(pts.iter().map(|p| p.1));
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;
    let join = |f: &dyn Fn(&(f64, f64)) -> f64| pts.iter().map(|p| fmt_num(f(p))).collect::<Vec<_>>().join(",");
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<figure class=\"chart-box\"><figcaption>{t}</figcaption><svg class=\"chart\" viewBox=\"0 0 {W} {H}\" \
         width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{t}\" data-xs=\"{xs}\" data-ys=\"{ys}\" \
         data-plot=\"{LEFT},{TOP},{pw},{ph}\" data-range=\"{x0},{x1},{y0},{y1}\">",
        t = esc(title),
        xs = join(&|p| p.0),
        ys = join(&|p| p.1),
    );
    let _ = write!(svg, "<rect class=\"plot\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\"/>");
    for i in 0..=4 {
        let v = y0 + (y1 - y0) * f64::from(i) / 4.0;
        let y = sy(v);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"ylab\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + pw,
            LEFT - 4.0,
            y + 3.5,
            esc(&fmt_num(v))
        );
    }
    for (x, anchor) in [(x0, "start"), (x1, "end")] {
        let _ = write!(
            svg,
            "<text class=\"xlab\" x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">step {}</text>",
            sx(x),
            H - 8.0,
            esc(&fmt_num(x))
        );
    }
    let line: Vec<String> = pts.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
    let _ = write!(svg, "<polyline class=\"line\" points=\"{}\"/>", line.join(" "));
    if pts.len() <= 60 {
        for &(x, y) in &pts {
            let _ = write!(svg, "<circle class=\"pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\"/>", sx(x), sy(y));
        }
    }
    svg.push_str("<circle class=\"hover\" cx=\"0\" cy=\"0\" r=\"4\" visibility=\"hidden\"/></svg>");
    svg.push_str("<div class=\"tip\" hidden></div></figure>");
    svg
}

/// A grouped bar chart: one group per category, one bar per series (values in [0, 1]).
pub fn bar_chart(title: &str, categories: &[String], series: &[(String, Vec<Option<f64>>)]) -> String {
    let colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"];
    let group_w = 24.0 * series.len().max(1) as f64 + 24.0;
    let width = (LEFT + RIGHT + group_w * categories.len().max(1) as f64).max(W);
    let legend_h = 18.0 * series.len() as f64;
    let ph = H - TOP - BOTTOM;
    let height = H + legend_h;
    let mut svg = format!(
        "<figure class=\"chart-box wide\"><figcaption>{t}</figcaption><svg class=\"chart bars\" \
         viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{t}\">",
        t = esc(title)
    );
    let sy = |v: f64| TOP + ph - v.clamp(0.0, 1.0) * ph;
    for i in 0..=4 {
        let v = f64::from(i) / 4.0;
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"ylab\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            width - RIGHT,
            LEFT - 4.0,
            sy(v) + 3.5,
            y = sy(v)
        );
    }
    for (c, cat) in categories.iter().enumerate() {
        let gx = LEFT + group_w * c as f64 + 12.0;
        for (s, (name, values)) in series.iter().enumerate() {
            let Some(v) = values.get(c).copied().flatten() else { continue };
            let x = gx + 24.0 * s as f64;
            let y = sy(v);
            let _ = write!(
                svg,
                "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"20\" height=\"{:.1}\" fill=\"{}\">\
                 <title>{}: {} = {}</title></rect>",
                (TOP + ph - y).max(0.5),
                colors[s % colors.len()],
                esc(name),
                esc(cat),
                esc(&fmt_num(v))
            );
        }
        let _ = write!(
            svg,
            "<text class=\"xlab\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            gx + (24.0 * series.len() as f64) / 2.0,
            TOP + ph + 16.0,
            esc(cat)
        );
    }
    for (s, (name, _)) in series.iter().enumerate() {
        let y = H + 18.0 * s as f64;
        let _ = write!(
            svg,
            "<rect x=\"{LEFT}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text class=\"legend\" x=\"{}\" y=\"{:.1}\">{}</text>",
            y - 10.0,
            colors[s % colors.len()],
            LEFT + 18.0,
            y,
            esc(name)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_lines_become_series() {
        let s = parse_metrics(
            "{\"step\":1,\"time\":5,\"reward/mean\":0.5,\"x\":null}\n{\"step\":2,\"reward/mean\":1}\ntorn",
        );
        assert_eq!(s.names, ["reward/mean"]);
        assert_eq!(s.points["reward/mean"], vec![(1.0, 0.5), (2.0, 1.0)]);
        assert_eq!(s.bad_lines, 1);
    }

    #[test]
    fn charts_escape_titles_and_thin_long_series() {
        let pts: Vec<(f64, f64)> = (0..1000).map(|i| (f64::from(i), 1.0)).collect();
        let svg = line_chart("a<b", &pts);
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        let xs = svg.split("data-xs=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("");
        assert!(xs.split(',').count() <= MAX_POINTS + 1 && xs.ends_with("999"));
        assert!(line_chart("empty", &[]).contains("no points"));
        let bars = bar_chart("acc", &["all".into()], &[("after_rl".into(), vec![Some(0.5)])]);
        assert!(bars.contains("class=\"bar\"") && bars.contains("after_rl"));
        assert_eq!((fmt_num(0.5), fmt_num(12.0), fmt_num(-0.0)), ("0.5".into(), "12".into(), "0".into()));
    }
}

//! The page around the report's sections: HTML escaping, the inline style sheet and the inline
//! script, so the file is self-contained (no network, no external files).
//!
//! The script only adds behaviour to what the server rendered: a hover read-out on each line
//! chart (nearest point's step and value), trajectory filters (question type, outcome, text),
//! expand/collapse all; when done it sets `data-ready="1"` and `data-charts="N"` on `<body>` and
//! `data-interactive="1"` on every chart it wired, which the headless-browser test checks. Left
//! out: any framework, and zooming.

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --fg: #1d232a; --muted: #5b6672; --line: #d7dde3; --ok: #2e7d32; --bad: #c62828; --accent: #4e79a7; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0; background: #f6f8fa; }
header { background: #24292f; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; color: #c9d1d9; }
main { padding: 8px 24px 40px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; margin: 16px 0; }
h2 { font-size: 17px; margin: 4px 0 10px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.chart-box { margin: 0; position: relative; border: 1px solid var(--line); border-radius: 4px; padding: 6px; background: #fff; }
.chart-box figcaption { font-weight: 600; font-size: 13px; margin-bottom: 2px; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg.chart .plot { fill: #fbfcfd; stroke: var(--line); }
svg.chart .grid { stroke: #e8ecef; }
svg.chart .line { fill: none; stroke: var(--accent); stroke-width: 1.8; }
svg.chart .pt { fill: var(--accent); }
svg.chart .hover { fill: #e15759; }
svg.chart text { font-size: 10px; fill: var(--muted); }
svg.chart .legend { font-size: 11px; fill: var(--fg); }
.tip { position: absolute; top: 6px; right: 8px; background: #24292f; color: #fff; font-size: 11px; padding: 2px 6px; border-radius: 3px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f3f6; }
.note { color: var(--muted); }
.controls { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-bottom: 8px; }
.traj { border: 1px solid var(--line); border-radius: 4px; margin: 6px 0; background: #fff; }
.traj > summary { cursor: pointer; padding: 6px 10px; }
.traj[open] > summary { border-bottom: 1px solid var(--line); background: #f6f8fa; }
.badge { display: inline-block; min-width: 18px; text-align: center; border-radius: 3px; color: #fff; font-weight: 700; margin-right: 4px; }
.badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); } .badge.na { background: var(--muted); }
.traj-body { padding: 8px 12px; }
.steps { padding-left: 18px; }
.step { margin: 8px 0; padding: 6px 8px; border-left: 3px solid var(--accent); background: #fbfcfd; }
.step.err { border-left-color: var(--bad); }
.step-head { font-weight: 600; }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 4px 0; }
dl.fields dt { color: var(--muted); }
dl.fields dd { margin: 0; white-space: pre-wrap; word-break: break-word; }
pre { white-space: pre-wrap; word-break: break-word; background: #f6f8fa; padding: 6px; margin: 4px 0; max-height: 320px; overflow: auto; }
.media { display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-start; margin-top: 4px; }
.media figure { margin: 0; font-size: 11px; color: var(--muted); text-align: center; }
.media img { display: block; border: 1px solid var(--line); image-rendering: auto; }
.strip { display: flex; flex-wrap: wrap; gap: 2px; max-width: 100%; }
.strip img { width: 96px; height: auto; }
"#;

const SCRIPT: &str = r#"
(function () {
  'use strict';
  var charts = Array.prototype.slice.call(document.querySelectorAll('svg.chart[data-xs]'));
  charts.forEach(function (svg) {
    var xs = svg.getAttribute('data-xs').split(',').map(Number);
    var ys = svg.getAttribute('data-ys').split(',').map(Number);
    var p = svg.getAttribute('data-plot').split(',').map(Number);
    var r = svg.getAttribute('data-range').split(',').map(Number);
    var dot = svg.querySelector('.hover');
    var tip = svg.parentNode.querySelector('.tip');
    function sx(x) { return p[0] + (x - r[0]) / (r[1] - r[0]) * p[2]; }
    function sy(y) { return p[1] + p[3] - (y - r[2]) / (r[3] - r[2]) * p[3]; }
    svg.addEventListener('mousemove', function (e) {
      var box = svg.getBoundingClientRect();
      var vb = svg.viewBox.baseVal;
      var x = (e.clientX - box.left) * vb.width / Math.max(box.width, 1);
      var best = 0, dist = Infinity;
      for (var i = 0; i < xs.length; i++) {
        var d = Math.abs(sx(xs[i]) - x);
        if (d < dist) { dist = d; best = i; }
      }
      dot.setAttribute('cx', sx(xs[best]));
      dot.setAttribute('cy', sy(ys[best]));
      dot.setAttribute('visibility', 'visible');
      if (tip) { tip.textContent = 'step ' + xs[best] + ': ' + ys[best]; tip.hidden = false; }
    });
    svg.addEventListener('mouseleave', function () {
      dot.setAttribute('visibility', 'hidden');
      if (tip) { tip.hidden = true; }
    });
    svg.setAttribute('data-interactive', '1');
  });

  var trajs = Array.prototype.slice.call(document.querySelectorAll('.traj'));
  var typeSel = document.getElementById('f-type');
  var outSel = document.getElementById('f-outcome');
  var text = document.getElementById('f-text');
  var shown = document.getElementById('f-shown');
  if (typeSel) {
    var types = {};
    trajs.forEach(function (t) { types[t.getAttribute('data-type')] = true; });
    Object.keys(types).sort().forEach(function (k) {
      var o = document.createElement('option');
      o.value = k; o.textContent = k;
      typeSel.appendChild(o);
    });
  }
  function apply() {
    var ty = typeSel ? typeSel.value : '', out = outSel ? outSel.value : '';
    var q = text ? text.value.toLowerCase() : '';
    var n = 0;
    trajs.forEach(function (t) {
      var ok = (!ty || t.getAttribute('data-type') === ty) &&
        (!out || t.getAttribute('data-outcome') === out) &&
        (!q || t.textContent.toLowerCase().indexOf(q) >= 0);
      t.hidden = !ok;
      if (ok) { n++; }
    });
    if (shown) { shown.textContent = n + ' of ' + trajs.length + ' shown'; }
  }
  [typeSel, outSel, text].forEach(function (el) { if (el) { el.addEventListener('input', apply); } });
  function setAll(open) { trajs.forEach(function (t) { t.open = open; }); }
  var ex = document.getElementById('f-expand'), co = document.getElementById('f-collapse');
  if (ex) { ex.addEventListener('click', function () { setAll(true); }); }
  if (co) { co.addEventListener('click', function () { setAll(false); }); }
  apply();
  document.body.setAttribute('data-charts', String(charts.length));
  document.body.setAttribute('data-ready', '1');
})();
"#;

/// The whole page around `body` (already escaped HTML).
pub fn page(title: &str, subtitle: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header><h1>{t}</h1><p>{s}</p></header>\n\
         <main>\n{body}\n</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n",
        t = esc(title),
        s = esc(subtitle),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        let p = page("<t>", "s", "<p>b</p>");
        assert!(p.contains("<title>&lt;t&gt;</title>") && p.contains("data-ready"));
        assert!(!p.contains("http://") && !p.contains("https://"));
    }
}

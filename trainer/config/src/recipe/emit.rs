//! Writes a JSON value as block YAML, for printing the resolved recipe. Strings that would
//! read back as something else (numbers, booleans, null) or need escaping are quoted.

use super::yaml::{Value as Yaml, resolve_plain};
use serde_json::Value;

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain_ok = !s.is_empty()
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./@+~".contains(c))
                && !s.starts_with(['-', '~', '@'])
                && resolve_plain(s) == Yaml::Str(s.clone());
            if plain_ok { s.clone() } else { serde_json::to_string(s).unwrap_or_default() }
        }
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty()) || matches!(v, Value::Object(o) if !o.is_empty())
}

fn write(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, item) in o {
                if is_block(item) {
                    out.push_str(&format!("{pad}{k}:\n"));
                    write(item, indent + 2, out);
                } else {
                    out.push_str(&format!("{pad}{k}: {}\n", scalar(item)));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                if is_block(item) {
                    // The first line of the item goes after the dash.
                    let mut inner = String::new();
                    write(item, indent + 2, &mut inner);
                    let trimmed = inner.trim_start_matches(' ');
                    out.push_str(&format!("{pad}- {trimmed}"));
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar(item)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// Block YAML for `value`.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write(value, 0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::yaml::parse;

    #[test]
    fn round_trips_through_our_parser() {
        let v = serde_json::json!({
            "name": "x", "n": 3, "lr": 1e-6, "flag": true, "none": null, "s": "true", "e": "",
            "list": [1, 2], "empty": [], "stages": [{"kind": "rl", "data": {"files": ["a b.jsonl"]}}]
        });
        let text = to_yaml(&v);
        let node = parse(&text, "emit").unwrap();
        assert_eq!(node.get("s").unwrap().value, Yaml::Str("true".into()));
        assert_eq!(node.get("lr").unwrap().value, Yaml::Float(1e-6));
        assert_eq!(node.get("none").unwrap().value, Yaml::Null);
        let Yaml::Seq(stages) = &node.get("stages").unwrap().value else { panic!("{text}") };
        let files = stages[0].get("data").unwrap().get("files").unwrap();
        assert!(matches!(&files.value, Yaml::Seq(f) if f[0].value == Yaml::Str("a b.jsonl".into())), "{text}");
    }
}

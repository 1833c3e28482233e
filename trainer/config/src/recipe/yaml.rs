//! A small YAML document model that remembers where every value came from.
//!
//! Recipes are parsed with `saphyr-parser` (events with spans) into [`Node`]s carrying an
//! [`Origin`]: a file position, an environment variable, or a `--set` argument. Overrides are
//! applied to this tree, and the typed recipe is deserialized from it (see `de.rs`), so every
//! error can name the line and column, or the variable, that produced the bad value.
//!
//! Scalars are resolved with the YAML 1.2 core schema (so `1e-6` is a float and `yes` is a
//! string, unlike YAML 1.1). Left out: tags other than the core `!!str`/`!!int`/`!!float`/
//! `!!bool`/`!!null` ones (a recipe has no use for them), merge keys (`<<`), and multiple
//! documents per file; each is reported as an error rather than silently misread.

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// 1-based line and column in a recipe file.
    File { path: Arc<str>, line: usize, col: usize },
    /// An environment variable override.
    Env { var: String },
    /// A `--set key=value` argument.
    Cli { arg: String },
    /// Created by the program (e.g. an intermediate map made by an override).
    Generated,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, col } => write!(f, "{path}:{line}:{col}"),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Cli { arg } => write!(f, "--set {arg}"),
            Origin::Generated => write!(f, "<generated>"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

impl Value {
    /// A short description for error messages: `string "abc"`, `a mapping`, ...
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "null".to_string(),
            Value::Bool(b) => format!("boolean {b}"),
            Value::Int(i) => format!("integer {i}"),
            Value::Float(x) => format!("number {x}"),
            Value::Str(s) => format!("string {s:?}"),
            Value::Seq(_) => "a list".to_string(),
            Value::Map(_) => "a mapping".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_origin: Origin,
    pub node: Node,
}

impl Node {
    pub fn new(value: Value, origin: Origin) -> Self {
        Node { value, origin }
    }

    pub fn map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.map()?.iter().find(|e| e.key == key).map(|e| &e.node)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A YAML syntax problem with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub origin: Origin,
    pub message: String,
}

fn origin_at(path: &Arc<str>, span: &Span) -> Origin {
    Origin::File { path: path.clone(), line: span.start.line(), col: span.start.col() + 1 }
}

/// Resolves a plain scalar with the YAML 1.2 core schema.
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::Int(i);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i64>()
    {
        return Value::Int(i);
    }
    if is_core_float(digits)
        && let Ok(x) = text.parse::<f64>()
    {
        return Value::Float(x);
    }
    Value::Str(text.to_string())
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` without the sign.
fn is_core_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (!int.is_empty() || !frac.is_empty())
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        }
    };
    mantissa_ok && exponent_ok
}

enum Frame {
    Seq { items: Vec<Node>, origin: Origin, anchor: usize },
    Map { entries: Vec<Entry>, pending_key: Option<(String, Origin)>, origin: Origin, anchor: usize },
}

/// Parses one YAML document. `path` is used in origins and messages. An empty document is
/// an empty mapping.
pub fn parse(source: &str, path: &str) -> Result<Node, SyntaxError> {
    let path: Arc<str> = Arc::from(path);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    for item in Parser::new_from_str(source) {
        let (event, span) = item.map_err(|e| SyntaxError {
            origin: Origin::File { path: path.clone(), line: e.marker().line(), col: e.marker().col() + 1 },
            message: e.info().to_string(),
        })?;
        let origin = origin_at(&path, &span);
        let err = |message: String| SyntaxError { origin: origin.clone(), message };
        let finished: Option<(Node, usize)> = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(err("a recipe holds one YAML document; found a second `---`".into()));
                }
                None
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar_value(&text, style, tag.as_deref()).map_err(err)?;
                Some((Node::new(value, origin), anchor))
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq { items: Vec::new(), origin, anchor });
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map { entries: Vec::new(), pending_key: None, origin, anchor });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq { items, origin, anchor }) => Some((Node::new(Value::Seq(items), origin), anchor)),
                Some(Frame::Map { entries, origin, anchor, .. }) => {
                    Some((Node::new(Value::Map(entries), origin), anchor))
                }
                None => return Err(err("unbalanced collection end".into())),
            },
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => Some((node.clone(), 0)),
                None => return Err(err("alias to an unknown anchor".into())),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => None,
        };
        let Some((node, anchor)) = finished else { continue };
        if anchor > 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, pending_key, .. }) => match pending_key.take() {
                None => *pending_key = Some((mapping_key(&node, entries)?, node.origin)),
                Some((key, key_origin)) => entries.push(Entry { key, key_origin, node }),
            },
        }
    }
    Ok(root.unwrap_or_else(|| Node::new(Value::Map(Vec::new()), Origin::File { path: path.clone(), line: 1, col: 1 })))
}

/// A scalar's value: core-schema tags (`!!str`, `!!int`, ...) are honoured, other tags refused;
/// untagged plain scalars resolve by the core schema, quoted ones are strings.
fn scalar_value(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    Ok(match (tag, style) {
        (Some(tag), _) if tag.is_yaml_core_schema() => match tag.suffix.as_str() {
            "str" => Value::Str(text.to_string()),
            "null" | "bool" | "int" | "float" => resolve_plain(text),
            other => return Err(format!("unsupported tag !!{other}")),
        },
        (Some(tag), _) => return Err(format!("unsupported tag {}{}", tag.handle, tag.suffix)),
        (None, ScalarStyle::Plain) => resolve_plain(text),
        (None, _) => Value::Str(text.to_string()),
    })
}

/// `node` as the next key of a mapping holding `entries`: a plain name, no merge key (`<<`),
/// not already defined.
fn mapping_key(node: &Node, entries: &[Entry]) -> Result<String, SyntaxError> {
    let refuse = |message: String| SyntaxError { origin: node.origin.clone(), message };
    let key = match &node.value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        other => return Err(refuse(format!("mapping keys must be plain names, found {}", other.describe()))),
    };
    if key == "<<" {
        return Err(refuse("merge keys (<<) are not supported".into()));
    }
    if let Some(first) = entries.iter().find(|e| e.key == key) {
        return Err(refuse(format!("duplicate key `{key}` (first defined at {})", first.key_origin)));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_schema_resolution() {
        let cases: &[(&str, Value)] = &[
            ("1e-6", Value::Float(1e-6)),
            ("0.5", Value::Float(0.5)),
            (".5", Value::Float(0.5)),
            ("42", Value::Int(42)),
            ("-3", Value::Int(-3)),
            ("0x1F", Value::Int(31)),
            ("true", Value::Bool(true)),
            ("yes", Value::Str("yes".into())),
            ("~", Value::Null),
            ("1.2.3", Value::Str("1.2.3".into())),
            ("e5", Value::Str("e5".into())),
            ("1e", Value::Str("1e".into())),
        ];
        for (text, want) in cases {
            assert_eq!(&resolve_plain(text), want, "{text}");
        }
    }

    #[test]
    fn positions_are_one_based() {
        let doc = parse("a: 1\nb:\n  c: \"x\"\n", "r.yaml").unwrap();
        let c = doc.get("b").unwrap().get("c").unwrap();
        assert_eq!(c.value, Value::Str("x".into()));
        assert_eq!(c.origin, Origin::File { path: "r.yaml".into(), line: 3, col: 6 });
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_are_located() {
        let e = parse("a: 1\na: 2\n", "r.yaml").unwrap_err();
        assert!(e.message.contains("duplicate key `a`"), "{}", e.message);
        assert_eq!(e.origin, Origin::File { path: "r.yaml".into(), line: 2, col: 1 });
        let e = parse("a: [1, 2\n", "r.yaml").unwrap_err();
        assert!(matches!(e.origin, Origin::File { .. }));
    }

    #[test]
    fn what_a_recipe_cannot_hold_is_refused_where_it_is() {
        let cases = [
            ("a: !!binary aGk=\n", "unsupported tag !!binary", 1),
            ("a: !custom 1\n", "unsupported tag !custom", 1),
            ("base: &b {x: 1}\nc:\n  <<: *b\n", "merge keys (<<) are not supported", 3),
            ("? [1, 2]\n: v\n", "mapping keys must be plain names, found a list", 1),
            ("a: 1\n---\nb: 2\n", "a recipe holds one YAML document; found a second `---`", 2),
        ];
        for (text, message, line) in cases {
            let e = parse(text, "r.yaml").unwrap_err();
            assert_eq!(e.message, message, "{text:?}");
            assert!(matches!(e.origin, Origin::File { line: l, .. } if l == line), "{text:?}: {}", e.origin);
        }
        let tagged = parse("a: !!str 12\nb: !!int 12\n", "r.yaml").unwrap();
        assert_eq!(tagged.get("a").unwrap().value, Value::Str("12".into()));
        assert_eq!(tagged.get("b").unwrap().value, Value::Int(12));
    }

    #[test]
    fn anchors_and_quoted_scalars() {
        let doc = parse("x: &v 3\ny: *v\nz: '1'\n", "r.yaml").unwrap();
        assert_eq!(doc.get("y").unwrap().value, Value::Int(3));
        assert_eq!(doc.get("z").unwrap().value, Value::Str("1".into()));
    }
}

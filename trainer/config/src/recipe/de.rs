//! Deserializes typed config from a [`Node`] tree and reports every problem at once.
//!
//! serde stops at the first error. To report all of them, [`from_node`] deserializes, records
//! the error with the path and origin of the offending node, removes that node from a copy of
//! the tree (so the field falls back to its default), and tries again until it succeeds.
//! Unknown keys never stop deserialization: the struct access skips them and records an issue
//! with a "did you mean" suggestion taken from the struct's own field list. This relies on
//! every config struct being `#[serde(default)]`; required values are `Option`s checked by
//! the recipe's `validate()`.

use super::yaml::{Node, Origin, Value};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Error as _, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::fmt::{self, Display};

/// One segment of a dotted key path.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Renders a path as `stages[0].optimizer.lr`.
pub fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() { "<root>".to_string() } else { out }
}

/// A problem found while reading the recipe tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub path: String,
    pub origin: Origin,
    pub message: String,
}

#[derive(Debug)]
pub struct DeError {
    path: Option<Vec<Seg>>,
    origin: Option<Origin>,
    message: String,
}

impl DeError {
    fn locate(mut self, path: &[Seg], origin: &Origin) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_vec());
            self.origin = Some(origin.clone());
        }
        self
    }
}

impl Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: Display>(msg: T) -> Self {
        DeError { path: None, origin: None, message: msg.to_string() }
    }

    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {exp}, found {unexp}"))
    }

    fn invalid_value(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {exp}, found {unexp}"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format_args!(
            "unknown value `{variant}`; expected one of: {}{}",
            expected.join(", "),
            did_you_mean(variant, expected).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing required key `{field}`"))
    }
}

/// The closest candidate to `word`, if one is close enough to be a plausible typo.
pub fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word_lc = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (*c, strsim::damerau_levenshtein(&word_lc, &c.to_lowercase())))
        .filter(|(c, d)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|(_, d)| *d)
        .map(|(c, _)| c)
}

type Sink<'s> = &'s RefCell<Vec<Issue>>;

struct NodeDe<'a, 's> {
    node: &'a Node,
    path: Vec<Seg>,
    sink: Sink<'s>,
}

impl<'a, 's> NodeDe<'a, 's> {
    fn child(&self, node: &'a Node, seg: Seg) -> NodeDe<'a, 's> {
        let mut path = self.path.clone();
        path.push(seg);
        NodeDe { node, path, sink: self.sink }
    }

    fn locate<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.locate(&self.path, &self.node.origin))
    }
}

impl<'de> de::Deserializer<'de> for NodeDe<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(x) => visitor.visit_f64(*x),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqDe { parent: &self, items, next: 0 }),
            Value::Map(entries) => visitor.visit_map(MapDe { parent: &self, entries, next: 0, fields: None }),
        };
        self.locate(r)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Map(entries) => visitor.visit_map(MapDe { parent: &self, entries, next: 0, fields: Some(fields) }),
            Value::Null => visitor.visit_map(MapDe { parent: &self, entries: &[], next: 0, fields: Some(fields) }),
            other => Err(DeError::custom(format_args!("expected a mapping, found {}", other.describe()))),
        };
        self.locate(r)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Str(s) => visitor.visit_enum(IntoDeserializer::<DeError>::into_deserializer(s.as_str())),
            Value::Bool(b) => {
                visitor.visit_enum(IntoDeserializer::<DeError>::into_deserializer(if *b { "true" } else { "false" }))
            }
            other => Err(DeError::custom(format_args!("expected a name, found {}", other.describe()))),
        };
        self.locate(r)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct SeqDe<'p, 'a, 's> {
    parent: &'p NodeDe<'a, 's>,
    items: &'a [Node],
    next: usize,
}

impl<'de> SeqAccess<'de> for SeqDe<'_, '_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.get(self.next) else { return Ok(None) };
        let child = self.parent.child(item, Seg::Index(self.next));
        self.next += 1;
        seed.deserialize(child).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.next)
    }
}

struct MapDe<'p, 'a, 's> {
    parent: &'p NodeDe<'a, 's>,
    entries: &'a [super::yaml::Entry],
    next: usize,
    /// Known field names when deserializing a struct: other keys are reported and skipped.
    fields: Option<&'static [&'static str]>,
}

impl<'de> MapAccess<'de> for MapDe<'_, '_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        while let Some(entry) = self.entries.get(self.next) {
            match self.fields {
                Some(fields) if !fields.contains(&entry.key.as_str()) => {
                    let mut path = self.parent.path.clone();
                    path.push(Seg::Key(entry.key.clone()));
                    let hint = match did_you_mean(&entry.key, fields) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("expected one of: {}", fields.join(", ")),
                    };
                    self.parent.sink.borrow_mut().push(Issue {
                        path: path_string(&path),
                        origin: entry.key_origin.clone(),
                        message: format!("unknown key `{}`; {hint}", entry.key),
                    });
                    self.next += 1;
                }
                _ => {
                    return seed
                        .deserialize(IntoDeserializer::<DeError>::into_deserializer(entry.key.as_str()))
                        .map(Some);
                }
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let entry = self.entries.get(self.next).ok_or_else(|| DeError::custom("value requested before its key"))?;
        self.next += 1;
        seed.deserialize(self.parent.child(&entry.node, Seg::Key(entry.key.clone())))
    }
}

/// Removes the node at `path` from `root`; false if there is nothing to remove.
fn remove_at(root: &mut Node, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut node = root;
    for seg in parents {
        let next = match (&mut node.value, seg) {
            (Value::Map(entries), Seg::Key(k)) => entries.iter_mut().find(|e| &e.key == k).map(|e| &mut e.node),
            (Value::Seq(items), Seg::Index(i)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match (&mut node.value, last) {
        (Value::Map(entries), Seg::Key(k)) => {
            let before = entries.len();
            entries.retain(|e| &e.key != k);
            entries.len() != before
        }
        // Keep indices stable for the other errors: replace the item rather than remove it.
        (Value::Seq(items), Seg::Index(i)) => match items.get_mut(*i) {
            Some(item) if item.value != Value::Map(Vec::new()) => {
                item.value = Value::Map(Vec::new());
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Deserializes `T` from `root`, collecting every problem. Returns the value when the tree
/// (minus the offending nodes) deserializes, and all issues in document order.
pub fn from_node<T: DeserializeOwned>(root: &Node) -> (Option<T>, Vec<Issue>) {
    let mut tree = root.clone();
    let mut hard: Vec<Issue> = Vec::new();
    for _ in 0..256 {
        let sink = RefCell::new(Vec::new());
        let de = NodeDe { node: &tree, path: Vec::new(), sink: &sink };
        match T::deserialize(de) {
            Ok(value) => {
                let mut issues = sink.into_inner();
                issues.extend(hard);
                sort_issues(&mut issues);
                return (Some(value), issues);
            }
            Err(e) => {
                let path = e.path.clone().unwrap_or_default();
                hard.push(Issue {
                    path: path_string(&path),
                    origin: e.origin.clone().unwrap_or_else(|| root.origin.clone()),
                    message: e.message,
                });
                if !remove_at(&mut tree, &path) {
                    let mut issues = sink.into_inner();
                    issues.extend(hard);
                    sort_issues(&mut issues);
                    return (None, issues);
                }
            }
        }
    }
    (None, hard)
}

fn sort_issues(issues: &mut [Issue]) {
    issues.sort_by_key(|i| match &i.origin {
        Origin::File { line, col, .. } => (0, *line, *col),
        Origin::Env { .. } => (1, 0, 0),
        Origin::Cli { .. } => (2, 0, 0),
        Origin::Generated => (3, 0, 0),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::yaml::parse;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        lr: f64,
        steps: u32,
        mode: Mode,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        #[default]
        Constant,
        Linear,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Outer {
        name: String,
        optimizer: Inner,
        items: Vec<Inner>,
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let src =
            "name: x\noptimizer:\n  lr: fast\n  stpes: 3\n  mode: linaer\nitems:\n  - steps: -1\n  - lr: 2\nextra: 1\n";
        let root = parse(src, "r.yaml").unwrap();
        let (value, issues) = from_node::<Outer>(&root);
        let got: Vec<(String, String)> =
            issues.iter().map(|i| (i.origin.to_string(), format!("{}: {}", i.path, i.message))).collect();
        assert_eq!(got.len(), 5, "{got:#?}");
        assert_eq!(got[0].0, "r.yaml:3:7");
        assert!(got[0].1.starts_with("optimizer.lr: expected f64, found string \"fast\""), "{}", got[0].1);
        assert_eq!(got[1].0, "r.yaml:4:3");
        assert_eq!(got[1].1, "optimizer.stpes: unknown key `stpes`; did you mean `steps`?");
        assert_eq!(got[2].0, "r.yaml:5:9");
        assert!(got[2].1.contains("(did you mean `linear`?)"), "{}", got[2].1);
        assert_eq!(got[3].0, "r.yaml:7:12");
        assert!(got[3].1.starts_with("items[0].steps: expected u32, found integer `-1`"), "{}", got[3].1);
        assert_eq!(got[4].0, "r.yaml:9:1");
        assert!(got[4].1.starts_with("extra: unknown key `extra`"), "{}", got[4].1);
        let value = value.unwrap();
        assert_eq!(value.items[1].lr, 2.0);
        assert_eq!(value.optimizer.lr, 0.0);
    }

    #[test]
    fn did_you_mean_needs_a_plausible_typo() {
        let fields = ["learning_rate", "betas", "weight_decay"];
        assert_eq!(did_you_mean("learning_rte", &fields), Some("learning_rate"));
        assert_eq!(did_you_mean("wieght_decay", &fields), Some("weight_decay"));
        assert_eq!(did_you_mean("zzz", &fields), None);
    }
}

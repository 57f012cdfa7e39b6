//! YAML text to a flat list of `dotted.key -> value` with the line of every key.
//!
//! Built on saphyr-parser's event stream (which carries spans) rather than a DOM, so that
//! every key keeps its line. Nested mappings flatten into dotted keys; flat and nested forms
//! may be mixed; a key that ends up twice is an error naming both lines.
//!
//! Reading is bounded: at most [`MAX_CONF_BYTES`] of text, [`MAX_CONF_DEPTH`] levels of
//! nesting and [`MAX_CONF_NODES`] nodes / [`MAX_CONF_EXPANDED_BYTES`] bytes of scalar text
//! after alias expansion (an alias counts as a copy of everything under its anchor), so an
//! alias bomb is refused after bounded work and memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

use crate::ConfigError;

/// The largest configuration text accepted, in bytes (1 MiB).
pub const MAX_CONF_BYTES: usize = 1 << 20;
/// The deepest nesting of lists and mappings accepted.
pub const MAX_CONF_DEPTH: usize = 64;
/// The most nodes a configuration document may expand to (aliases counted at every use).
pub const MAX_CONF_NODES: usize = 100_000;
/// The most scalar text a configuration document may expand to (aliases counted at every use).
pub const MAX_CONF_EXPANDED_BYTES: usize = 4 << 20;

/// A value of the flattened document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlatValue {
    /// A scalar; `None` for YAML null (`~`, `null`, or nothing after the colon).
    Scalar(Option<String>),
    /// A sequence.
    List,
    /// A mapping that was not flattened: empty, or the value of a known (leaf) key.
    Map,
}

impl FlatValue {
    /// `a list` / `a mapping`, for messages.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            FlatValue::Scalar(_) => "a single value",
            FlatValue::List => "a list",
            FlatValue::Map => "a mapping",
        }
    }
}

/// One `key: value` of the flattened document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlatEntry {
    /// Dotted key (`high-availability.zookeeper.quorum`).
    pub key: String,
    /// 1-based line of the (innermost) key.
    pub line: usize,
    /// The value.
    pub value: FlatValue,
}

/// Parses `text` and flattens its single document.
///
/// `is_leaf` tells which dotted keys take a single value: a mapping under such a key is
/// reported as [`FlatValue::Map`] instead of being flattened further.
pub(crate) fn flatten(text: &str, file: &str, is_leaf: &dyn Fn(&str) -> bool) -> Result<Vec<FlatEntry>, ConfigError> {
    if text.len() > MAX_CONF_BYTES {
        return Err(ConfigError::Syntax {
            file: file.to_owned(),
            line: 1,
            column: 1,
            message: format!("the file is {} bytes long; the limit is {MAX_CONF_BYTES} bytes (1 MiB)", text.len()),
        });
    }
    let Some(root) = read_document(text, file)? else {
        return Ok(Vec::new());
    };
    let entries = match root {
        Node::Map { entries, .. } => entries,
        Node::Scalar { null: true, .. } => return Ok(Vec::new()),
        other => {
            return Err(ConfigError::NotAMapping { file: file.to_owned(), line: other.line(), found: other.describe() })
        }
    };
    let mut out = Vec::new();
    flatten_map("", entries, file, is_leaf, &mut out)?;
    check_duplicates(&out, file)?;
    Ok(out)
}

fn flatten_map(
    prefix: &str,
    entries: Vec<(Node, Node)>,
    file: &str,
    is_leaf: &dyn Fn(&str) -> bool,
    out: &mut Vec<FlatEntry>,
) -> Result<(), ConfigError> {
    for (key_node, value) in entries {
        let (name, line) = match key_node {
            Node::Scalar { text, line, .. } if !text.trim().is_empty() => (text, line),
            other => {
                let problem = match other {
                    Node::Scalar { .. } => "the key is empty".to_owned(),
                    _ => format!("the key is {}", other.describe()),
                };
                return Err(ConfigError::InvalidKey { file: file.to_owned(), line: other.line(), problem });
            }
        };
        let key = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
        match value {
            Node::Map { entries, .. } if !entries.is_empty() && !is_leaf(&key) => {
                flatten_map(&key, entries, file, is_leaf, out)?;
            }
            Node::Map { .. } => out.push(FlatEntry { key, line, value: FlatValue::Map }),
            Node::Seq { .. } => out.push(FlatEntry { key, line, value: FlatValue::List }),
            Node::Scalar { text, null, .. } => {
                out.push(FlatEntry { key, line, value: FlatValue::Scalar((!null).then_some(text)) })
            }
        }
    }
    Ok(())
}

fn check_duplicates(entries: &[FlatEntry], file: &str) -> Result<(), ConfigError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for entry in entries {
        if let Some(first_line) = seen.insert(&entry.key, entry.line) {
            return Err(ConfigError::DuplicateKey {
                key: entry.key.clone(),
                file: file.to_owned(),
                first_line,
                second_line: entry.line,
            });
        }
    }
    Ok(())
}

/// A YAML node reduced to what configuration needs.
#[derive(Debug, Clone)]
enum Node {
    Scalar { text: String, null: bool, line: usize },
    Seq { line: usize },
    Map { line: usize, entries: Vec<(Node, Node)> },
}

impl Node {
    fn line(&self) -> usize {
        match self {
            Node::Scalar { line, .. } | Node::Seq { line } | Node::Map { line, .. } => *line,
        }
    }

    fn describe(&self) -> String {
        match self {
            Node::Scalar { text, .. } => format!("the value '{}'", crate::excerpt(text)),
            Node::Seq { .. } => "a list".to_owned(),
            Node::Map { .. } => "a mapping".to_owned(),
        }
    }
}

/// The plain scalars YAML 1.2 reads as null.
fn is_null(text: &str, style: ScalarStyle) -> bool {
    style == ScalarStyle::Plain && matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

struct Reader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    file: &'a str,
    /// Anchored nodes, with the nodes and scalar bytes each one counts when aliased.
    anchors: HashMap<usize, (Node, usize, usize)>,
    /// Lists and mappings currently open.
    depth: usize,
    /// Nodes read so far, aliases expanded.
    nodes: usize,
    /// Scalar bytes read so far, aliases expanded.
    bytes: usize,
}

/// Reads the single document of `text`; `None` when there is none (empty file, comments).
fn read_document(text: &str, file: &str) -> Result<Option<Node>, ConfigError> {
    let mut reader =
        Reader { parser: Parser::new_from_str(text), file, anchors: HashMap::new(), depth: 0, nodes: 0, bytes: 0 };
    let mut root = None;
    loop {
        let (event, span) = reader.next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => return Ok(root),
            Event::DocumentStart(_) => {
                if root.is_some() {
                    return Err(ConfigError::Syntax {
                        file: file.to_owned(),
                        line: span.start.line(),
                        column: span.start.col() + 1,
                        message: "a configuration file holds one YAML document, found a second one".to_owned(),
                    });
                }
                let (event, span) = reader.next()?;
                root = Some(reader.node(event, span)?);
            }
            other => {
                // The parser always opens a document first; be defensive anyway.
                root = Some(reader.node(other, span)?);
            }
        }
    }
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), ConfigError> {
        match self.parser.next_event() {
            Some(Ok(next)) => Ok(next),
            Some(Err(err)) => Err(self.syntax(&err)),
            // `next_event` returns `None` only after `StreamEnd`, which `read_document` stops at.
            None => Err(ConfigError::Syntax {
                file: self.file.to_owned(),
                line: 0,
                column: 0,
                message: "unexpected end of input".to_owned(),
            }),
        }
    }

    fn syntax(&self, err: &ScanError) -> ConfigError {
        ConfigError::Syntax {
            file: self.file.to_owned(),
            line: err.marker().line(),
            column: err.marker().col() + 1,
            message: err.info().to_owned(),
        }
    }

    fn limit(&self, span: &Span, message: String) -> ConfigError {
        ConfigError::Syntax {
            file: self.file.to_owned(),
            line: span.start.line(),
            column: span.start.col() + 1,
            message,
        }
    }

    /// Counts `nodes` more nodes and `bytes` more scalar bytes, refusing beyond the limits.
    fn count(&mut self, nodes: usize, bytes: usize, span: &Span, alias: bool) -> Result<(), ConfigError> {
        self.nodes = self.nodes.saturating_add(nodes);
        self.bytes = self.bytes.saturating_add(bytes);
        let how = if alias { " (each use of an alias counts everything under its anchor again)" } else { "" };
        if self.nodes > MAX_CONF_NODES {
            return Err(self.limit(
                span,
                format!("the document has more than {MAX_CONF_NODES} nodes{how}; the limit is {MAX_CONF_NODES} nodes"),
            ));
        }
        if self.bytes > MAX_CONF_EXPANDED_BYTES {
            return Err(self.limit(
                span,
                format!(
                    "the document has more than {MAX_CONF_EXPANDED_BYTES} bytes of values{how}; the limit is \
                     {MAX_CONF_EXPANDED_BYTES} bytes"
                ),
            ));
        }
        Ok(())
    }

    /// Opens a list or mapping, refusing beyond [`MAX_CONF_DEPTH`].
    fn enter(&mut self, span: &Span) -> Result<(), ConfigError> {
        if self.depth >= MAX_CONF_DEPTH {
            return Err(self.limit(
                span,
                format!(
                    "lists and mappings nest more than {MAX_CONF_DEPTH} levels deep; the limit is {MAX_CONF_DEPTH}"
                ),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    /// Reads the node that starts with `event`, including all its children.
    fn node(&mut self, event: Event<'a>, span: Span) -> Result<Node, ConfigError> {
        let line = span.start.line();
        let (nodes_before, bytes_before) = (self.nodes, self.bytes);
        if !matches!(event, Event::Alias(_)) {
            let bytes = if let Event::Scalar(text, ..) = &event { text.len() } else { 0 };
            self.count(1, bytes, &span, false)?;
        }
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                (Node::Scalar { null: is_null(&text, style), text: text.into_owned(), line }, anchor)
            }
            Event::SequenceStart(anchor, _tag) => {
                self.enter(&span)?;
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    self.node(event, span)?;
                }
                self.depth -= 1;
                (Node::Seq { line }, anchor)
            }
            Event::MappingStart(anchor, _tag) => {
                self.enter(&span)?;
                let mut entries = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(event, span)?;
                    let (event, span) = self.next()?;
                    let value = self.node(event, span)?;
                    entries.push((key, value));
                }
                self.depth -= 1;
                (Node::Map { line, entries }, anchor)
            }
            Event::Alias(id) => {
                let Some((_, nodes, bytes)) = self.anchors.get(&id) else {
                    return Err(self.limit(&span, "alias to an unknown anchor".to_owned()));
                };
                // Count the copy before making it: the budget bounds the work and memory.
                self.count(*nodes, *bytes, &span, true)?;
                return Ok(self.anchors[&id].0.clone());
            }
            other => {
                return Err(ConfigError::Syntax {
                    file: self.file.to_owned(),
                    line,
                    column: span.start.col() + 1,
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        };
        if anchor != 0 {
            let counts = (self.nodes - nodes_before, self.bytes - bytes_before);
            // The kept copy is memory too: count it (nested anchors would otherwise multiply it).
            self.count(counts.0, counts.1, &span, true)?;
            self.anchors.insert(anchor, (node.clone(), counts.0, counts.1));
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(text: &str) -> Result<Vec<(String, usize, FlatValue)>, ConfigError> {
        let leaf = |key: &str| key == "leaf";
        Ok(flatten(text, "t.yaml", &leaf)?.into_iter().map(|e| (e.key, e.line, e.value)).collect())
    }

    fn s(text: &str) -> FlatValue {
        FlatValue::Scalar(Some(text.to_owned()))
    }

    #[test]
    fn empty_and_comment_only_documents_are_empty() {
        assert_eq!(flat("").unwrap(), vec![]);
        assert_eq!(flat("# nothing here\n\n").unwrap(), vec![]);
        assert_eq!(flat("---\n").unwrap(), vec![]);
        assert_eq!(flat("~\n").unwrap(), vec![]);
    }

    #[test]
    fn flat_and_nested_keys_mix() {
        let text = "a.b: 1\nc:\n  d:\n    e: two\n  f: 3\ng.h:\n  i: x\n";
        assert_eq!(
            flat(text).unwrap(),
            vec![
                ("a.b".to_owned(), 1, s("1")),
                ("c.d.e".to_owned(), 4, s("two")),
                ("c.f".to_owned(), 5, s("3")),
                ("g.h.i".to_owned(), 7, s("x")),
            ]
        );
    }

    #[test]
    fn nulls_lists_and_maps() {
        let text = "a:\nb: ~\nc: null\nd: 'null'\ne: [1, 2]\nf: {}\nleaf:\n  x: 1\n";
        assert_eq!(
            flat(text).unwrap(),
            vec![
                ("a".to_owned(), 1, FlatValue::Scalar(None)),
                ("b".to_owned(), 2, FlatValue::Scalar(None)),
                ("c".to_owned(), 3, FlatValue::Scalar(None)),
                ("d".to_owned(), 4, s("null")),
                ("e".to_owned(), 5, FlatValue::List),
                ("f".to_owned(), 6, FlatValue::Map),
                ("leaf".to_owned(), 7, FlatValue::Map),
            ]
        );
    }

    #[test]
    fn anchors_and_aliases_resolve() {
        let text = "a: &port 8081\nb: *port\n";
        assert_eq!(flat(text).unwrap(), vec![("a".to_owned(), 1, s("8081")), ("b".to_owned(), 2, s("8081"))]);
    }

    #[test]
    fn duplicates_name_both_lines() {
        let err = flat("x:\n  y: 1\nx.y: 2\n").unwrap_err();
        assert_eq!(err.to_string(), "duplicate key 'x.y' in t.yaml: set at line 2 and again at line 3");
    }

    #[test]
    fn top_level_must_be_a_mapping() {
        assert_eq!(
            flat("- a\n- b\n").unwrap_err().to_string(),
            "invalid configuration file t.yaml: the top level must be a mapping of keys to \
             values (key: value), found a list at line 1"
        );
        assert_eq!(
            flat("\n\njust text\n").unwrap_err().to_string(),
            "invalid configuration file t.yaml: the top level must be a mapping of keys to \
             values (key: value), found the value 'just text' at line 3"
        );
    }

    #[test]
    fn keys_must_be_text() {
        assert_eq!(
            flat("a: 1\n[x, y]: 2\n").unwrap_err().to_string(),
            "invalid key at t.yaml:2: the key is a list; expected a plain text key such as \
             rest.port"
        );
        assert_eq!(
            flat("a: 1\n'': 2\n").unwrap_err().to_string(),
            "invalid key at t.yaml:2: the key is empty; expected a plain text key such as \
             rest.port"
        );
    }

    #[test]
    fn second_document_is_an_error() {
        assert_eq!(
            flat("a: 1\n---\nb: 2\n").unwrap_err().to_string(),
            "YAML syntax error at t.yaml:2:1: a configuration file holds one YAML document, \
             found a second one"
        );
    }

    #[test]
    fn alias_bombs_nesting_and_size_are_limited() {
        let mut bomb = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_string();
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let err = flat(&bomb).unwrap_err().to_string();
        assert!(err.contains(&format!("the limit is {MAX_CONF_NODES} nodes")), "{err}");
        let big = format!("a: &x {}\nb: [{}]\n", "y".repeat(100_000), vec!["*x"; 100].join(", "));
        let err = flat(&big).unwrap_err().to_string();
        assert!(err.contains(&format!("the limit is {MAX_CONF_EXPANDED_BYTES} bytes")), "{err}");
        let deep: String = (0..200).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        let err = flat(&deep).unwrap_err().to_string();
        assert!(
            err.contains(&format!("nest more than {MAX_CONF_DEPTH} levels deep; the limit is {MAX_CONF_DEPTH}")),
            "{err}"
        );
        let ok: String = (0..MAX_CONF_DEPTH).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        assert_eq!(flat(&ok).unwrap().len(), 1);
        let huge = format!("a: {}\n", "x".repeat(MAX_CONF_BYTES));
        let err = flat(&huge).unwrap_err().to_string();
        assert!(err.contains(&format!("the limit is {MAX_CONF_BYTES} bytes")), "{err}");
        let long = "v".repeat(10_000);
        let err = flat(&format!("{long}\n")).unwrap_err().to_string();
        assert!(err.len() < 300 && err.contains("…(10000 bytes)"), "{err}");
    }
}

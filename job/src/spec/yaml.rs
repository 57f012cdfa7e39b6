//! A small YAML tree that remembers the line of every node, built on saphyr-parser's event
//! stream (which carries spans), so spec errors can say where they are.
//!
//! A job spec arrives over the network, so reading it is bounded: at most [`MAX_YAML_DEPTH`]
//! levels of nesting and [`MAX_YAML_NODES`] nodes and [`MAX_YAML_EXPANDED_BYTES`] bytes of
//! scalar text *after* alias expansion (an alias counts as a copy of everything under its
//! anchor, so a "billion laughs" alias bomb is refused after at most that much work and
//! memory). The size of the text itself is limited by the caller
//! ([`crate::MAX_SPEC_BYTES`]).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

/// The deepest nesting of sequences and mappings accepted.
pub const MAX_YAML_DEPTH: usize = 64;
/// The most nodes (scalars, sequences, mappings, keys) a document may expand to, counting
/// every use of an alias as a copy of its anchored node.
pub const MAX_YAML_NODES: usize = 100_000;
/// The most scalar text a document may expand to (aliases counted at every use).
pub const MAX_YAML_EXPANDED_BYTES: usize = 4 << 20;

/// One YAML value of a job spec, with the 1-based line it starts on (0 when it was built in
/// code rather than parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlNode {
    /// 1-based line where the node starts; 0 for nodes built in code.
    pub line: usize,
    /// The value.
    pub value: YamlValue,
}

/// A YAML value: scalars stay text (the reader decides how to interpret them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlValue {
    /// `~`, `null` or nothing after the colon.
    Null,
    /// A scalar, as written (quotes removed).
    Scalar(String),
    /// A sequence.
    Seq(Vec<YamlNode>),
    /// A mapping with scalar keys, in document order.
    Map(Vec<YamlEntry>),
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlEntry {
    /// The key.
    pub key: String,
    /// 1-based line of the key (0 when built in code).
    pub line: usize,
    /// The value.
    pub value: YamlNode,
}

impl YamlNode {
    /// A node built in code (line 0).
    pub fn new(value: YamlValue) -> YamlNode {
        YamlNode { line: 0, value }
    }

    /// An empty mapping built in code (what `count: {}` parses to).
    pub fn empty_map() -> YamlNode {
        YamlNode::new(YamlValue::Map(Vec::new()))
    }

    /// A mapping of scalars built in code, e.g. `YamlNode::map_of(&[("function", "max")])`.
    pub fn map_of(entries: &[(&str, &str)]) -> YamlNode {
        YamlNode::new(YamlValue::Map(
            entries
                .iter()
                .map(|(k, v)| YamlEntry {
                    key: (*k).to_string(),
                    line: 0,
                    value: YamlNode::new(YamlValue::Scalar((*v).to_string())),
                })
                .collect(),
        ))
    }

    /// The entry `key` of a mapping (`None` for other node kinds).
    pub fn get(&self, key: &str) -> Option<&YamlEntry> {
        match &self.value {
            YamlValue::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            YamlValue::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// `a mapping`, `a list`, `nothing (null)` or `the value 'x'`, for messages (a long
    /// value is shortened to an excerpt).
    pub fn describe(&self) -> String {
        match &self.value {
            YamlValue::Null => "nothing (null)".to_string(),
            YamlValue::Scalar(s) => format!("the value '{}'", keel_conf::excerpt(s)),
            YamlValue::Seq(_) => "a list".to_string(),
            YamlValue::Map(_) => "a mapping".to_string(),
        }
    }
}

/// A YAML syntax problem: 1-based line and column, and the parser's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses the single document of `text`; `None` when there is none (empty or comments only).
pub(crate) fn parse(text: &str) -> Result<Option<YamlNode>, SyntaxError> {
    let mut reader =
        Reader { parser: Parser::new_from_str(text), anchors: HashMap::new(), depth: 0, nodes: 0, bytes: 0 };
    let mut root = None;
    loop {
        let (event, span) = reader.next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => return Ok(root),
            Event::DocumentStart(_) => {
                if root.is_some() {
                    return Err(SyntaxError {
                        line: span.start.line(),
                        column: span.start.col() + 1,
                        message: "a job spec is one YAML document, found a second one".to_string(),
                    });
                }
                let (event, span) = reader.next()?;
                root = Some(reader.node(event, span)?);
            }
            other => root = Some(reader.node(other, span)?),
        }
    }
}

/// The plain scalars YAML 1.2 reads as null.
fn is_null(text: &str, style: ScalarStyle) -> bool {
    style == ScalarStyle::Plain && matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

struct Reader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    /// Anchored nodes, with the nodes and scalar bytes each one counts when aliased.
    anchors: HashMap<usize, (YamlNode, usize, usize)>,
    /// Sequences and mappings currently open.
    depth: usize,
    /// Nodes read so far, aliases expanded.
    nodes: usize,
    /// Scalar bytes read so far, aliases expanded.
    bytes: usize,
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok(next)) => Ok(next),
            Some(Err(err)) => Err(syntax(&err)),
            None => Err(SyntaxError { line: 0, column: 0, message: "unexpected end of input".to_string() }),
        }
    }

    /// Counts `nodes` more nodes and `bytes` more scalar bytes, refusing beyond the limits.
    fn count(&mut self, nodes: usize, bytes: usize, span: &Span, alias: bool) -> Result<(), SyntaxError> {
        self.nodes = self.nodes.saturating_add(nodes);
        self.bytes = self.bytes.saturating_add(bytes);
        let how = if alias { " (each use of an alias counts everything under its anchor again)" } else { "" };
        let problem = if self.nodes > MAX_YAML_NODES {
            format!("the document has more than {MAX_YAML_NODES} nodes{how}; the limit is {MAX_YAML_NODES} nodes")
        } else if self.bytes > MAX_YAML_EXPANDED_BYTES {
            format!(
                "the document has more than {MAX_YAML_EXPANDED_BYTES} bytes of values{how}; the limit is \
                 {MAX_YAML_EXPANDED_BYTES} bytes"
            )
        } else {
            return Ok(());
        };
        Err(SyntaxError { line: span.start.line(), column: span.start.col() + 1, message: problem })
    }

    /// Opens a sequence or mapping, refusing beyond [`MAX_YAML_DEPTH`].
    fn enter(&mut self, span: &Span) -> Result<(), SyntaxError> {
        if self.depth >= MAX_YAML_DEPTH {
            return Err(SyntaxError {
                line: span.start.line(),
                column: span.start.col() + 1,
                message: format!(
                    "lists and mappings nest more than {MAX_YAML_DEPTH} levels deep; the limit is {MAX_YAML_DEPTH}"
                ),
            });
        }
        self.depth += 1;
        Ok(())
    }

    fn node(&mut self, event: Event<'a>, span: Span) -> Result<YamlNode, SyntaxError> {
        let line = span.start.line();
        let (nodes_before, bytes_before) = (self.nodes, self.bytes);
        if !matches!(event, Event::Alias(_)) {
            let bytes = if let Event::Scalar(text, ..) = &event { text.len() } else { 0 };
            self.count(1, bytes, &span, false)?;
        }
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if is_null(&text, style) { YamlValue::Null } else { YamlValue::Scalar(text.into_owned()) };
                (YamlNode { line, value }, anchor)
            }
            Event::SequenceStart(anchor, _tag) => {
                self.enter(&span)?;
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span)?);
                }
                self.depth -= 1;
                (YamlNode { line, value: YamlValue::Seq(items) }, anchor)
            }
            Event::MappingStart(anchor, _tag) => {
                self.enter(&span)?;
                let mut entries: Vec<YamlEntry> = Vec::new();
                // Key → line, so that a mapping with many keys is checked in linear time.
                let mut seen: HashMap<String, usize> = HashMap::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let key_line = span.start.line();
                    let key_col = span.start.col() + 1;
                    let key = self.node(event, span)?;
                    let key = match key.value {
                        YamlValue::Scalar(s) => s,
                        other => {
                            return Err(SyntaxError {
                                line: key_line,
                                column: key_col,
                                message: format!(
                                    "a key must be a plain name, found {}",
                                    YamlNode { line: key_line, value: other }.describe()
                                ),
                            })
                        }
                    };
                    if let Some(first_line) = seen.get(&key) {
                        return Err(SyntaxError {
                            line: key_line,
                            column: key_col,
                            message: format!(
                                "duplicate key '{}' (first set at line {first_line})",
                                keel_conf::excerpt(&key)
                            ),
                        });
                    }
                    seen.insert(key.clone(), key_line);
                    let (event, span) = self.next()?;
                    let value = self.node(event, span)?;
                    entries.push(YamlEntry { key, line: key_line, value });
                }
                self.depth -= 1;
                (YamlNode { line, value: YamlValue::Map(entries) }, anchor)
            }
            Event::Alias(id) => {
                let Some((_, nodes, bytes)) = self.anchors.get(&id) else {
                    return Err(SyntaxError {
                        line,
                        column: span.start.col() + 1,
                        message: "alias to an unknown anchor".to_string(),
                    });
                };
                // Count the copy before making it: the budget bounds the work and memory.
                self.count(*nodes, *bytes, &span, true)?;
                return Ok(self.anchors[&id].0.clone());
            }
            other => {
                return Err(SyntaxError {
                    line,
                    column: span.start.col() + 1,
                    message: format!("unexpected YAML event {other:?}"),
                })
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

fn syntax(err: &ScanError) -> SyntaxError {
    SyntaxError { line: err.marker().line(), column: err.marker().col() + 1, message: err.info().to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_values() {
        let doc = parse("a: 1\nb:\n  - x: ~\n  - 'null'\nc: {}\n").unwrap().unwrap();
        let YamlValue::Map(entries) = &doc.value else { panic!() };
        assert_eq!(
            entries.iter().map(|e| (e.key.as_str(), e.line)).collect::<Vec<_>>(),
            [("a", 1), ("b", 2), ("c", 5)]
        );
        let YamlValue::Seq(items) = &entries[1].value.value else { panic!() };
        assert_eq!(items[0].line, 3);
        assert_eq!(items[0].get("x").unwrap().value.value, YamlValue::Null);
        assert_eq!(items[1].value, YamlValue::Scalar("null".into()));
        assert_eq!(entries[2].value.value, YamlValue::Map(vec![]));
    }

    #[test]
    fn empty_documents_and_errors() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!((err.line, err.column, err.message.as_str()), (2, 1, "duplicate key 'a' (first set at line 1)"));
        let err = parse("a: [1, 2\n").unwrap_err();
        assert!(err.line >= 1, "{err:?}");
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.message, "a job spec is one YAML document, found a second one");
    }

    /// The classic "billion laughs": nine levels of nine aliases each.
    pub(crate) fn alias_bomb() -> String {
        let mut text = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_string();
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        text
    }

    #[test]
    fn alias_bombs_are_refused_by_the_node_budget() {
        let bomb = alias_bomb();
        assert!(bomb.len() < 600, "{}", bomb.len());
        let err = parse(&bomb).unwrap_err();
        assert!(err.message.contains(&format!("the limit is {MAX_YAML_NODES} nodes")), "{err:?}");
        assert!(err.message.contains("each use of an alias"), "{err:?}");
        assert!(err.line >= 5, "{err:?}");
        // Aliases within the budget still resolve.
        let doc = parse("a: &x [1, 2]\nb: *x\n").unwrap().unwrap();
        assert_eq!(doc.get("b").unwrap().value.value, doc.get("a").unwrap().value.value);
        // A big scalar copied by aliases hits the byte budget, not memory.
        let big = format!("a: &x {}\nb: [{}]\n", "y".repeat(100_000), vec!["*x"; 100].join(", "));
        let err = parse(&big).unwrap_err();
        assert!(err.message.contains(&format!("the limit is {MAX_YAML_EXPANDED_BYTES} bytes")), "{err:?}");
    }

    #[test]
    fn nesting_and_node_counts_are_limited() {
        let ok = format!("{}1{}", "[".repeat(MAX_YAML_DEPTH), "]".repeat(MAX_YAML_DEPTH));
        parse(&ok).unwrap();
        let deep = format!("{}1{}", "[".repeat(MAX_YAML_DEPTH + 1), "]".repeat(MAX_YAML_DEPTH + 1));
        let err = parse(&deep).unwrap_err();
        assert_eq!(
            err.message,
            format!("lists and mappings nest more than {MAX_YAML_DEPTH} levels deep; the limit is {MAX_YAML_DEPTH}")
        );
        assert_eq!((err.line, err.column), (1, MAX_YAML_DEPTH + 1));
        // Very deep flow collections are refused too (saphyr's own scanner limit may come first).
        let err = parse(&format!("{}1{}", "{a: ".repeat(10_000), "}".repeat(10_000))).unwrap_err();
        assert!(err.message.contains("nest more than") || err.message.contains("recursion limit"), "{err:?}");
        let block: String = (0..200).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        let err = parse(&block).unwrap_err();
        assert!(err.message.contains("nest more than"), "{err:?}");
        let many = format!("[{}]", vec!["1"; MAX_YAML_NODES].join(","));
        let err = parse(&many).unwrap_err();
        assert_eq!(
            err.message,
            format!("the document has more than {MAX_YAML_NODES} nodes; the limit is {MAX_YAML_NODES} nodes")
        );
        // Many distinct keys are fine (and checked for duplicates in linear time).
        let keys: String = (0..20_000).map(|i| format!("k{i}: {i}\n")).collect();
        let YamlValue::Map(entries) = parse(&keys).unwrap().unwrap().value else { panic!() };
        assert_eq!(entries.len(), 20_000);
    }

    #[test]
    fn long_values_are_quoted_as_excerpts() {
        let long = "x".repeat(100_000);
        let err = parse(&format!("? {long}\n: 1\n? {long}\n: 2\n")).unwrap_err();
        assert!(err.message.len() < 200, "{}", err.message);
        assert!(err.message.contains("…(100000 bytes)"), "{}", err.message);
        assert!(YamlNode::new(YamlValue::Scalar(long)).describe().len() < 120);
    }
}

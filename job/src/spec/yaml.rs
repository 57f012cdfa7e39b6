//! A small YAML tree that remembers the line of every node, built on saphyr-parser's event
//! stream (which carries spans), so spec errors can say where they are.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

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

    /// `a mapping`, `a list`, `nothing (null)` or `the value 'x'`, for messages.
    pub fn describe(&self) -> String {
        match &self.value {
            YamlValue::Null => "nothing (null)".to_string(),
            YamlValue::Scalar(s) => format!("the value '{s}'"),
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
    let mut reader = Reader { parser: Parser::new_from_str(text), anchors: HashMap::new() };
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
    anchors: HashMap<usize, YamlNode>,
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok(next)) => Ok(next),
            Some(Err(err)) => Err(syntax(&err)),
            None => Err(SyntaxError { line: 0, column: 0, message: "unexpected end of input".to_string() }),
        }
    }

    fn node(&mut self, event: Event<'a>, span: Span) -> Result<YamlNode, SyntaxError> {
        let line = span.start.line();
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if is_null(&text, style) { YamlValue::Null } else { YamlValue::Scalar(text.into_owned()) };
                (YamlNode { line, value }, anchor)
            }
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span)?);
                }
                (YamlNode { line, value: YamlValue::Seq(items) }, anchor)
            }
            Event::MappingStart(anchor, _tag) => {
                let mut entries: Vec<YamlEntry> = Vec::new();
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
                    if let Some(first) = entries.iter().find(|e| e.key == key) {
                        return Err(SyntaxError {
                            line: key_line,
                            column: key_col,
                            message: format!("duplicate key '{key}' (first set at line {})", first.line),
                        });
                    }
                    let (event, span) = self.next()?;
                    let value = self.node(event, span)?;
                    entries.push(YamlEntry { key, line: key_line, value });
                }
                (YamlNode { line, value: YamlValue::Map(entries) }, anchor)
            }
            Event::Alias(id) => {
                return self.anchors.get(&id).cloned().ok_or_else(|| SyntaxError {
                    line,
                    column: span.start.col() + 1,
                    message: "alias to an unknown anchor".to_string(),
                });
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
            self.anchors.insert(anchor, node.clone());
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
}

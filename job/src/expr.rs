//! The expression language of `map` and `filter`: a small hand-written parser, a type check
//! at parse time and an evaluator with checked arithmetic.
//!
//! ```text
//! expr     := or
//! or       := and ( "||" and )*
//! and      := compare ( "&&" compare )*
//! compare  := sum ( ("==" | "!=" | "<" | "<=" | ">" | ">=") sum )?
//! sum      := product ( ("+" | "-") product )*
//! product  := unary ( ("*" | "/" | "%") unary )*
//! unary    := ("!" | "-") unary | primary
//! primary  := INTEGER | "value" | "seq" | "key" | STRING | "true" | "false" | "(" expr ")"
//! ```
//!
//! Types: `value`, `seq` and integer literals are integers (i64); `key` and string literals
//! (`"k1"` or `'k1'`, escapes `\"`, `\'`, `\\`) are strings, which can only be compared with
//! `==` and `!=`; comparisons, `&&`, `||`, `!`, `true` and `false` are booleans. Arithmetic
//! is checked: division or remainder by zero and overflow are record errors; a divisor that
//! is a constant 0 (`value / 0`, `value % (1 - 1)`) is refused at parse time.
//!
//! Limits (an expression arrives over the network in a job spec): at most
//! [`MAX_EXPR_LEN`] bytes, [`MAX_EXPR_TOKENS`] tokens and [`MAX_EXPR_DEPTH`] levels of
//! nesting (parentheses, unary operators and each operator of a chain such as `a + b + c`
//! count as one level). Parsing, type checking, constant folding and evaluation recurse at
//! most that deep, so no expression can overflow a thread's stack.

use std::fmt;

use crate::operators::Record;

/// The longest expression text accepted, in bytes.
pub const MAX_EXPR_LEN: usize = 4096;
/// The most tokens (numbers, names, strings, operators, parentheses) an expression may have.
pub const MAX_EXPR_TOKENS: usize = 1024;
/// The deepest nesting accepted: parentheses, unary operators and the operators of a chain
/// (`a + b + c` is two levels) each count as one level.
pub const MAX_EXPR_DEPTH: usize = 64;

/// The type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExprType {
    /// A 64-bit signed integer.
    Int,
    /// `true` or `false`.
    Bool,
    /// A string (`key` or a literal).
    Str,
}

impl ExprType {
    fn noun(self) -> &'static str {
        match self {
            ExprType::Int => "an integer",
            ExprType::Bool => "a boolean",
            ExprType::Str => "a string",
        }
    }
}

impl fmt::Display for ExprType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// Why an expression text is not a valid expression: the 1-based column (in characters)
/// and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ExprError {
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Why evaluating an expression on a record failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// `a / 0` or `a % 0`.
    #[error("division by zero at column {column}")]
    DivisionByZero {
        /// Column of the operator.
        column: usize,
    },
    /// The result does not fit in an i64.
    #[error("integer overflow in '{op}' at column {column}")]
    Overflow {
        /// The operator.
        op: &'static str,
        /// Column of the operator.
        column: usize,
    },
}

/// A value an expression evaluates to (strings borrow from the record or the expression).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprValue<'a> {
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Int(i64),
    Bool(bool),
    Str(String),
    Value,
    Seq,
    Key,
    Neg(Box<Node>, usize),
    Not(Box<Node>),
    Bin(BinOp, Box<Node>, Box<Node>, usize),
}

/// A parsed, type-checked expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    text: String,
    root: Node,
    ty: ExprType,
}

impl Expression {
    /// Parses and type-checks `text`.
    ///
    /// # Notable errors
    /// * [`ExprError`] with the column and what was expected there (syntax), or what types
    ///   an operator needs (type errors).
    /// * [`ExprError`] when the text is longer than [`MAX_EXPR_LEN`] bytes, has more than
    ///   [`MAX_EXPR_TOKENS`] tokens or nests deeper than [`MAX_EXPR_DEPTH`] levels (the message
    ///   names the limit), or divides by a constant 0.
    pub fn parse(text: &str) -> Result<Expression, ExprError> {
        if text.len() > MAX_EXPR_LEN {
            return Err(ExprError {
                column: 1,
                message: format!("the expression is {} bytes long; the limit is {MAX_EXPR_LEN} bytes", text.len()),
            });
        }
        let tokens = lex(text)?;
        let mut p = ExprParser { tokens, pos: 0, end_column: text.chars().count() + 1, nesting: 0 };
        let (root, ty, _, _) = p.or()?;
        if let Some(t) = p.peek() {
            return Err(ExprError {
                column: t.column,
                message: format!("expected an operator or the end of the expression, found {}", t.kind.describe()),
            });
        }
        Ok(Expression { text: text.to_string(), root, ty })
    }

    /// The text as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The type of the result.
    pub fn ty(&self) -> ExprType {
        self.ty
    }

    /// Evaluates the expression on `record`.
    ///
    /// # Notable errors
    /// * [`EvalError::DivisionByZero`], [`EvalError::Overflow`] (also for a `seq` above
    ///   `i64::MAX`).
    pub fn eval<'a>(&'a self, record: &'a Record) -> Result<ExprValue<'a>, EvalError> {
        eval(&self.root, record)
    }

    /// Evaluates an integer expression (see [`Expression::ty`]); a non-integer result is 0.
    ///
    /// # Notable errors
    /// As [`Expression::eval`].
    pub fn eval_i64(&self, record: &Record) -> Result<i64, EvalError> {
        Ok(match self.eval(record)? {
            ExprValue::Int(i) => i,
            _ => 0,
        })
    }

    /// Evaluates a boolean expression (see [`Expression::ty`]); a non-boolean result is false.
    ///
    /// # Notable errors
    /// As [`Expression::eval`].
    pub fn eval_bool(&self, record: &Record) -> Result<bool, EvalError> {
        Ok(matches!(self.eval(record)?, ExprValue::Bool(true)))
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn eval<'a>(node: &'a Node, r: &'a Record) -> Result<ExprValue<'a>, EvalError> {
    Ok(match node {
        Node::Int(i) => ExprValue::Int(*i),
        Node::Bool(b) => ExprValue::Bool(*b),
        Node::Str(s) => ExprValue::Str(s),
        Node::Value => ExprValue::Int(r.value),
        Node::Seq => ExprValue::Int(i64::try_from(r.seq).map_err(|_| EvalError::Overflow { op: "seq", column: 1 })?),
        Node::Key => ExprValue::Str(&r.key),
        Node::Neg(inner, column) => {
            let v = int(eval(inner, r)?);
            ExprValue::Int(v.checked_neg().ok_or(EvalError::Overflow { op: "-", column: *column })?)
        }
        Node::Not(inner) => ExprValue::Bool(!boolean(eval(inner, r)?)),
        Node::Bin(op, a, b, column) => {
            let column = *column;
            match op {
                BinOp::And => return Ok(ExprValue::Bool(boolean(eval(a, r)?) && boolean(eval(b, r)?))),
                BinOp::Or => return Ok(ExprValue::Bool(boolean(eval(a, r)?) || boolean(eval(b, r)?))),
                BinOp::Eq | BinOp::Ne => {
                    let equal = eval(a, r)? == eval(b, r)?;
                    return Ok(ExprValue::Bool(equal == (*op == BinOp::Eq)));
                }
                _ => {}
            }
            let (x, y) = (int(eval(a, r)?), int(eval(b, r)?));
            let overflow = EvalError::Overflow { op: op.symbol(), column };
            match op {
                BinOp::Add => ExprValue::Int(x.checked_add(y).ok_or(overflow)?),
                BinOp::Sub => ExprValue::Int(x.checked_sub(y).ok_or(overflow)?),
                BinOp::Mul => ExprValue::Int(x.checked_mul(y).ok_or(overflow)?),
                BinOp::Div | BinOp::Rem => {
                    if y == 0 {
                        return Err(EvalError::DivisionByZero { column });
                    }
                    let v = if *op == BinOp::Div { x.checked_div(y) } else { x.checked_rem(y) };
                    ExprValue::Int(v.ok_or(overflow)?)
                }
                BinOp::Lt => ExprValue::Bool(x < y),
                BinOp::Le => ExprValue::Bool(x <= y),
                BinOp::Gt => ExprValue::Bool(x > y),
                BinOp::Ge => ExprValue::Bool(x >= y),
                BinOp::And | BinOp::Or | BinOp::Eq | BinOp::Ne => unreachable!("handled above"),
            }
        }
    })
}

fn int(v: ExprValue<'_>) -> i64 {
    match v {
        ExprValue::Int(i) => i,
        _ => 0,
    }
}

fn boolean(v: ExprValue<'_>) -> bool {
    matches!(v, ExprValue::Bool(true))
}

// ---- lexer ----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Int(i64),
    Ident(String),
    Str(String),
    Op(&'static str),
    LParen,
    RParen,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Int(i) => format!("the number {i}"),
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Str(s) => format!("the string {s:?}"),
            Tok::Op(o) => format!("'{o}'"),
            Tok::LParen => "'('".to_string(),
            Tok::RParen => "')'".to_string(),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    column: usize,
}

const OPERAND: &str = "an operand (a number, value, seq, key, a string, true, false or '(')";

fn lex(text: &str) -> Result<Vec<Token>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        check_token_count(out.len(), column)?;
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                return Err(ExprError {
                    column: i + 1,
                    message: format!("unexpected {:?} after a number (numbers are whole decimal integers)", chars[i]),
                });
            }
            let digits: String = chars[start..i].iter().collect();
            let n = digits.parse::<i64>().map_err(|_| ExprError {
                column,
                message: format!("integer literal {digits} is too large (the maximum is {})", i64::MAX),
            })?;
            out.push(Token { kind: Tok::Int(n), column });
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token { kind: Tok::Ident(chars[start..i].iter().collect()), column });
            continue;
        }
        if c == '"' || c == '\'' {
            let quote = c;
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(ExprError { column, message: format!("unterminated string: no closing {quote}") })
                    }
                    Some('\\') => match chars.get(i + 1) {
                        Some(e @ ('"' | '\'' | '\\')) => {
                            s.push(*e);
                            i += 2;
                        }
                        other => {
                            return Err(ExprError {
                                column: i + 1,
                                message: format!(
                                    "unknown escape {}; expected \\\", \\' or \\\\",
                                    other.map_or("at the end".to_string(), |c| format!("'\\{c}'"))
                                ),
                            })
                        }
                    },
                    Some(ch) if *ch == quote => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Token { kind: Tok::Str(s), column });
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op2 = ["==", "!=", "<=", ">=", "&&", "||"].into_iter().find(|o| *o == two);
        if let Some(op) = op2 {
            out.push(Token { kind: Tok::Op(op), column });
            i += 2;
            continue;
        }
        let kind = match c {
            '+' => Tok::Op("+"),
            '-' => Tok::Op("-"),
            '*' => Tok::Op("*"),
            '/' => Tok::Op("/"),
            '%' => Tok::Op("%"),
            '<' => Tok::Op("<"),
            '>' => Tok::Op(">"),
            '!' => Tok::Op("!"),
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '=' => {
                return Err(ExprError { column, message: "'=' is not an operator; use '==' to compare".to_string() })
            }
            '&' => return Err(ExprError { column, message: "'&' is not an operator; use '&&'".to_string() }),
            '|' => return Err(ExprError { column, message: "'|' is not an operator; use '||'".to_string() }),
            other => return Err(ExprError { column, message: format!("unexpected character {other:?}") }),
        };
        out.push(Token { kind, column });
        i += 1;
    }
    Ok(out)
}

/// Refuses the token that would be one too many.
fn check_token_count(count: usize, column: usize) -> Result<(), ExprError> {
    if count >= MAX_EXPR_TOKENS {
        return Err(ExprError {
            column,
            message: format!("the expression has more than {MAX_EXPR_TOKENS} tokens; the limit is {MAX_EXPR_TOKENS}"),
        });
    }
    Ok(())
}

// ---- parser with type check ----

struct ExprParser {
    tokens: Vec<Token>,
    pos: usize,
    end_column: usize,
    /// How deep the parser has recursed into parentheses and unary operators.
    nesting: usize,
}

/// A parsed sub-expression, its type, its first column and the depth of its tree.
type Parsed = (Node, ExprType, usize, usize);

fn too_deep(column: usize) -> ExprError {
    ExprError {
        column,
        message: format!(
            "the expression nests more than {MAX_EXPR_DEPTH} levels deep (parentheses, unary operators and \
             each operator of a chain count as one level); the limit is {MAX_EXPR_DEPTH}"
        ),
    }
}

/// The depth of a node over children of depths `a` and `b`, refused beyond the limit.
fn deeper(a: usize, b: usize, column: usize) -> Result<usize, ExprError> {
    let d = a.max(b) + 1;
    if d > MAX_EXPR_DEPTH {
        return Err(too_deep(column));
    }
    Ok(d)
}

/// The value of an integer expression without names (`1 - 1`, `-(2 * 3)`), if it has one.
/// Recurses at most [`MAX_EXPR_DEPTH`] deep (the parser refuses deeper trees).
fn constant(node: &Node) -> Option<i64> {
    match node {
        Node::Int(i) => Some(*i),
        Node::Neg(inner, _) => constant(inner)?.checked_neg(),
        Node::Bin(op, a, b, _) => {
            let (x, y) = (constant(a)?, constant(b)?);
            match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div => x.checked_div(y),
                BinOp::Rem => x.checked_rem(y),
                _ => None,
            }
        }
        _ => None,
    }
}

impl ExprParser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_op(&self, ops: &[&'static str]) -> Option<(&'static str, usize)> {
        match self.peek() {
            Some(Token { kind: Tok::Op(o), column }) if ops.contains(o) => Some((o, *column)),
            _ => None,
        }
    }

    fn need(&self, column: usize, what: &str, found: ExprType, needed: ExprType) -> Result<(), ExprError> {
        if found == needed {
            Ok(())
        } else {
            Err(ExprError { column, message: format!("{what} needs {needed}, found {found}") })
        }
    }

    fn or(&mut self) -> Result<Parsed, ExprError> {
        let (mut node, mut ty, start, mut depth) = self.and()?;
        while let Some((_, column)) = self.peek_op(&["||"]) {
            self.pos += 1;
            let (rhs, rty, rcol, rdepth) = self.and()?;
            self.need(start, "the left side of '||'", ty, ExprType::Bool)?;
            self.need(rcol, "the right side of '||'", rty, ExprType::Bool)?;
            depth = deeper(depth, rdepth, column)?;
            node = Node::Bin(BinOp::Or, Box::new(node), Box::new(rhs), column);
            ty = ExprType::Bool;
        }
        Ok((node, ty, start, depth))
    }

    fn and(&mut self) -> Result<Parsed, ExprError> {
        let (mut node, mut ty, start, mut depth) = self.compare()?;
        while let Some((_, column)) = self.peek_op(&["&&"]) {
            self.pos += 1;
            let (rhs, rty, rcol, rdepth) = self.compare()?;
            self.need(start, "the left side of '&&'", ty, ExprType::Bool)?;
            self.need(rcol, "the right side of '&&'", rty, ExprType::Bool)?;
            depth = deeper(depth, rdepth, column)?;
            node = Node::Bin(BinOp::And, Box::new(node), Box::new(rhs), column);
            ty = ExprType::Bool;
        }
        Ok((node, ty, start, depth))
    }

    fn compare(&mut self) -> Result<Parsed, ExprError> {
        let (lhs, lty, start, ldepth) = self.sum()?;
        let Some((op, column)) = self.peek_op(&["==", "!=", "<", "<=", ">", ">="]) else {
            return Ok((lhs, lty, start, ldepth));
        };
        self.pos += 1;
        let (rhs, rty, rcol, rdepth) = self.sum()?;
        let depth = deeper(ldepth, rdepth, column)?;
        let bin = match op {
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            "<" => BinOp::Lt,
            "<=" => BinOp::Le,
            ">" => BinOp::Gt,
            _ => BinOp::Ge,
        };
        if matches!(bin, BinOp::Eq | BinOp::Ne) {
            if lty != rty {
                return Err(ExprError {
                    column,
                    message: format!("'{op}' compares values of one type, found {lty} and {rty}"),
                });
            }
        } else {
            if lty == ExprType::Str || rty == ExprType::Str {
                return Err(ExprError {
                    column,
                    message: format!("strings can only be compared with == and !=, not with '{op}'"),
                });
            }
            self.need(start, &format!("the left side of '{op}'"), lty, ExprType::Int)?;
            self.need(rcol, &format!("the right side of '{op}'"), rty, ExprType::Int)?;
        }
        if let Some((op2, column2)) = self.peek_op(&["==", "!=", "<", "<=", ">", ">="]) {
            return Err(ExprError {
                column: column2,
                message: format!("comparisons do not chain: add parentheses around one side of '{op2}'"),
            });
        }
        Ok((Node::Bin(bin, Box::new(lhs), Box::new(rhs), column), ExprType::Bool, start, depth))
    }

    fn sum(&mut self) -> Result<Parsed, ExprError> {
        let (mut node, ty, start, mut depth) = self.product()?;
        while let Some((op, column)) = self.peek_op(&["+", "-"]) {
            self.pos += 1;
            let (rhs, rty, rcol, rdepth) = self.product()?;
            self.need(start, &format!("the left side of '{op}'"), ty, ExprType::Int)?;
            self.need(rcol, &format!("the right side of '{op}'"), rty, ExprType::Int)?;
            depth = deeper(depth, rdepth, column)?;
            let bin = if op == "+" { BinOp::Add } else { BinOp::Sub };
            node = Node::Bin(bin, Box::new(node), Box::new(rhs), column);
        }
        Ok((node, ty, start, depth))
    }

    fn product(&mut self) -> Result<Parsed, ExprError> {
        let (mut node, ty, start, mut depth) = self.unary()?;
        while let Some((op, column)) = self.peek_op(&["*", "/", "%"]) {
            self.pos += 1;
            let (rhs, rty, rcol, rdepth) = self.unary()?;
            self.need(start, &format!("the left side of '{op}'"), ty, ExprType::Int)?;
            self.need(rcol, &format!("the right side of '{op}'"), rty, ExprType::Int)?;
            depth = deeper(depth, rdepth, column)?;
            let bin = match op {
                "*" => BinOp::Mul,
                "/" => BinOp::Div,
                _ => BinOp::Rem,
            };
            if bin != BinOp::Mul && constant(&rhs) == Some(0) {
                let what = if bin == BinOp::Div { "division" } else { "remainder" };
                return Err(ExprError {
                    column,
                    message: format!(
                        "{what} by zero: the right side of '{op}' is always 0; expected a divisor that is not 0"
                    ),
                });
            }
            node = Node::Bin(bin, Box::new(node), Box::new(rhs), column);
        }
        Ok((node, ty, start, depth))
    }

    /// Enters one level of parser recursion (a parenthesis or a unary operator at `column`).
    fn enter(&mut self, column: usize) -> Result<(), ExprError> {
        if self.nesting >= MAX_EXPR_DEPTH {
            return Err(too_deep(column));
        }
        self.nesting += 1;
        Ok(())
    }

    fn unary(&mut self) -> Result<Parsed, ExprError> {
        if let Some((op, column)) = self.peek_op(&["!", "-"]) {
            self.pos += 1;
            self.enter(column)?;
            let (inner, ty, icol, idepth) = self.unary()?;
            self.nesting -= 1;
            let depth = deeper(idepth, 0, column)?;
            return if op == "!" {
                self.need(icol, "'!'", ty, ExprType::Bool)?;
                Ok((Node::Not(Box::new(inner)), ExprType::Bool, column, depth))
            } else {
                self.need(icol, "unary '-'", ty, ExprType::Int)?;
                Ok((Node::Neg(Box::new(inner), column), ExprType::Int, column, depth))
            };
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Parsed, ExprError> {
        let Some(token) = self.peek().cloned() else {
            return Err(ExprError { column: self.end_column, message: format!("expected {OPERAND}, found the end") });
        };
        self.pos += 1;
        let column = token.column;
        let mut depth = 1;
        let parsed = match token.kind {
            Tok::Int(i) => (Node::Int(i), ExprType::Int),
            Tok::Str(s) => (Node::Str(s), ExprType::Str),
            Tok::Ident(name) => match name.as_str() {
                "value" => (Node::Value, ExprType::Int),
                "seq" => (Node::Seq, ExprType::Int),
                "key" => (Node::Key, ExprType::Str),
                "true" => (Node::Bool(true), ExprType::Bool),
                "false" => (Node::Bool(false), ExprType::Bool),
                other => {
                    let hint = ["value", "seq", "key"]
                        .into_iter()
                        .find(|k| strsim::osa_distance(k, &other.to_lowercase()) <= 2)
                        .map(|k| format!(" (did you mean '{k}'?)"))
                        .unwrap_or_default();
                    return Err(ExprError {
                        column,
                        message: format!("unknown name '{other}'{hint}; the names are value, seq and key"),
                    });
                }
            },
            Tok::LParen => {
                self.enter(column)?;
                let (inner, ty, _, idepth) = self.or()?;
                self.nesting -= 1;
                depth = idepth;
                match self.peek() {
                    Some(Token { kind: Tok::RParen, .. }) => self.pos += 1,
                    Some(t) => {
                        return Err(ExprError {
                            column: t.column,
                            message: format!(
                                "expected ')' to close the '(' at column {column}, found {}",
                                t.kind.describe()
                            ),
                        })
                    }
                    None => {
                        return Err(ExprError {
                            column: self.end_column,
                            message: format!("expected ')' to close the '(' at column {column}, found the end"),
                        })
                    }
                }
                (inner, ty)
            }
            other => {
                return Err(ExprError { column, message: format!("expected {OPERAND}, found {}", other.describe()) })
            }
        };
        Ok((parsed.0, parsed.1, column, depth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, value: i64, seq: u64) -> Record {
        Record { key: key.to_string(), value, seq, window: None }
    }

    fn int(text: &str, r: &Record) -> i64 {
        let e = Expression::parse(text).unwrap();
        assert_eq!(e.ty(), ExprType::Int, "{text}");
        e.eval_i64(r).unwrap()
    }

    fn boolean(text: &str, r: &Record) -> bool {
        let e = Expression::parse(text).unwrap();
        assert_eq!(e.ty(), ExprType::Bool, "{text}");
        e.eval_bool(r).unwrap()
    }

    fn err(text: &str) -> String {
        Expression::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn arithmetic_precedence_and_names() {
        let r = rec("k3", 7, 10);
        assert_eq!(int("value * 2", &r), 14);
        assert_eq!(int("1 + 2 * 3", &r), 7);
        assert_eq!(int("(1 + 2) * 3", &r), 9);
        assert_eq!(int("value - seq - 1", &r), -4);
        assert_eq!(int("-value + 1", &r), -6);
        assert_eq!(int("--value", &r), 7);
        assert_eq!(int("value / 2", &r), 3);
        assert_eq!(int("-7 / 2", &r), -3);
        assert_eq!(int("value % 3", &r), 1);
        assert_eq!(int("seq", &r), 10);
        assert_eq!(int("  42  ", &r), 42);
    }

    #[test]
    fn booleans_and_strings() {
        let r = rec("k3", 7, 10);
        assert!(boolean("value % 3 != 0", &r));
        assert!(!boolean("value % 7 != 0", &r));
        assert!(boolean("key == \"k3\"", &r));
        assert!(boolean("'k3' == key", &r));
        assert!(boolean("key != 'k1' && value > 5", &r));
        assert!(boolean("value < 0 || seq >= 10", &r));
        assert!(boolean("!(value <= 6)", &r));
        assert!(boolean("!false && true", &r));
        assert!(boolean("(value > 1) == (seq > 1)", &r));
        assert!(boolean("\"a\\\"b\" == 'a\"b'", &r));
        // && binds tighter than ||.
        assert!(boolean("true || false && false", &r));
    }

    #[test]
    fn runtime_errors() {
        let r = rec("k", 5, 0);
        let e = Expression::parse("value / (value - 5)").unwrap();
        assert_eq!(e.eval(&r), Err(EvalError::DivisionByZero { column: 7 }));
        assert_eq!(e.eval(&r).unwrap_err().to_string(), "division by zero at column 7");
        let e = Expression::parse("value % (value - value)").unwrap();
        assert_eq!(e.eval(&r), Err(EvalError::DivisionByZero { column: 7 }));
        let e = Expression::parse("value * 9223372036854775807").unwrap();
        assert_eq!(e.eval(&r).unwrap_err().to_string(), "integer overflow in '*' at column 7");
        let big = rec("k", i64::MIN, 0);
        assert!(matches!(Expression::parse("-value").unwrap().eval(&big), Err(EvalError::Overflow { .. })));
        assert!(matches!(Expression::parse("value / -1").unwrap().eval(&big), Err(EvalError::Overflow { .. })));
    }

    #[test]
    fn syntax_errors_name_the_column() {
        assert_eq!(
            err("value * "),
            "column 9: expected an operand (a number, value, seq, key, a string, true, false or '('), found the end"
        );
        assert_eq!(
            err(""),
            "column 1: expected an operand (a number, value, seq, key, a string, true, false or '('), found the end"
        );
        assert_eq!(
            err("value +* 2"),
            "column 8: expected an operand (a number, value, seq, key, a string, true, false or '('), found '*'"
        );
        assert_eq!(err("(value + 1"), "column 11: expected ')' to close the '(' at column 1, found the end");
        assert_eq!(err("value 2"), "column 7: expected an operator or the end of the expression, found the number 2");
        assert_eq!(
            err("valeu * 2"),
            "column 1: unknown name 'valeu' (did you mean 'value'?); the names are value, seq and key"
        );
        assert_eq!(err("count + 1"), "column 1: unknown name 'count'; the names are value, seq and key");
        assert_eq!(err("value = 1"), "column 7: '=' is not an operator; use '==' to compare");
        assert_eq!(err("value & 1"), "column 7: '&' is not an operator; use '&&'");
        assert_eq!(err("value # 1"), "column 7: unexpected character '#'");
        assert_eq!(err("1.5 * value"), "column 2: unexpected '.' after a number (numbers are whole decimal integers)");
        assert_eq!(
            err("99999999999999999999"),
            "column 1: integer literal 99999999999999999999 is too large (the maximum is 9223372036854775807)"
        );
        assert_eq!(err("key == \"k1"), "column 8: unterminated string: no closing \"");
        assert_eq!(err("1 < 2 < 3"), "column 7: comparisons do not chain: add parentheses around one side of '<'");
        assert_eq!(err("(1))"), "column 4: expected an operator or the end of the expression, found ')'");
    }

    #[test]
    fn type_errors() {
        assert_eq!(err("key + 1"), "column 1: the left side of '+' needs an integer, found a string");
        assert_eq!(err("value * (1 < 2)"), "column 9: the right side of '*' needs an integer, found a boolean");
        assert_eq!(err("key < 'k2'"), "column 5: strings can only be compared with == and !=, not with '<'");
        assert_eq!(err("key == 1"), "column 5: '==' compares values of one type, found a string and an integer");
        assert_eq!(err("value && true"), "column 1: the left side of '&&' needs a boolean, found an integer");
        assert_eq!(err("!value"), "column 2: '!' needs a boolean, found an integer");
        assert_eq!(err("-key"), "column 2: unary '-' needs an integer, found a string");
        assert_eq!(Expression::parse("key").unwrap().ty(), ExprType::Str);
    }

    #[test]
    fn constant_zero_divisors_are_refused_at_parse_time() {
        assert_eq!(
            err("value / 0"),
            "column 7: division by zero: the right side of '/' is always 0; expected a divisor that is not 0"
        );
        assert_eq!(
            err("value % (1 - 1)"),
            "column 7: remainder by zero: the right side of '%' is always 0; expected a divisor that is not 0"
        );
        assert!(err("1 + seq / -(2 * 0)").contains("division by zero"));
        assert!(err("(value / 0) > 1").contains("column 8: division by zero"));
        // Not constant, or not zero: accepted (and checked per record).
        Expression::parse("value / 2").unwrap();
        Expression::parse("value * 0").unwrap();
        Expression::parse("value / (value - 1)").unwrap();
        Expression::parse("value / (9223372036854775807 + 1)").unwrap();
    }

    #[test]
    fn nesting_is_limited() {
        let r = rec("k", 3, 0);
        let ok = format!("{}value{}", "(".repeat(MAX_EXPR_DEPTH), ")".repeat(MAX_EXPR_DEPTH));
        assert_eq!(int(&ok, &r), 3);
        let limit = format!("the limit is {MAX_EXPR_DEPTH}");
        let deep = format!("{}value{}", "(".repeat(MAX_EXPR_DEPTH + 1), ")".repeat(MAX_EXPR_DEPTH + 1));
        let e = err(&deep);
        assert!(e.starts_with(&format!("column {}: the expression nests more than", MAX_EXPR_DEPTH + 1)), "{e}");
        assert!(e.contains(&limit), "{e}");
        let e = err(&format!("{}value{}", "(".repeat(400), ")".repeat(400)));
        assert!(e.contains(&limit), "{e}");
        // The issue's case: 2,000 parentheses (refused by the token limit, not a stack overflow).
        let e = err(&format!("{}value{}", "(".repeat(2000), ")".repeat(2000)));
        assert!(e.contains("the limit is"), "{e}");
        // Unary operators and operator chains count too: the tree the evaluator walks stays shallow.
        assert_eq!(int(&format!("{}value", "-".repeat(MAX_EXPR_DEPTH - 1)), &r), -3);
        assert!(err(&format!("{}value", "-".repeat(MAX_EXPR_DEPTH + 1))).contains(&limit));
        assert!(err(&format!("{}true", "!".repeat(1000))).contains(&limit));
        let chain = |n: usize| std::iter::repeat_n("value", n).collect::<Vec<_>>().join(" + ");
        assert_eq!(int(&chain(MAX_EXPR_DEPTH), &r), 3 * MAX_EXPR_DEPTH as i64);
        assert!(err(&chain(MAX_EXPR_DEPTH + 1)).contains(&limit));
        assert!(err(&format!("{}true", "true && ".repeat(500))).contains(&limit));
    }

    #[test]
    fn length_and_tokens_are_limited() {
        let e = err(&format!("value + {}", " ".repeat(MAX_EXPR_LEN)));
        assert_eq!(
            e,
            format!("column 1: the expression is {} bytes long; the limit is {MAX_EXPR_LEN} bytes", MAX_EXPR_LEN + 8)
        );
        // Under the length limit but with too many tokens (balanced so the depth limit is not hit).
        let many = std::iter::repeat_n("(1)", MAX_EXPR_TOKENS / 3 + 1).collect::<Vec<_>>().join("*");
        assert!(many.len() <= MAX_EXPR_LEN);
        let e = err(&many);
        assert!(e.contains(&format!("the limit is {MAX_EXPR_TOKENS}")), "{e}");
    }
}

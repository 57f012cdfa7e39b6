//! The built-in operators: `map`, `filter`, `count`, `sum`, `reduce`, `window`, each
//! implemented through the public [`Operator`] trait.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::registry::{OperatorConfig, OperatorConfigError, OperatorFactory};
use super::{Operator, OperatorContext, OperatorError, Record};
use crate::expr::{ExprType, Expression};

/// The factory of built-in operator `name` (one of [`super::BUILTIN_OPERATORS`]).
pub(super) fn factory(name: &str) -> OperatorFactory {
    match name {
        "map" => Arc::new(|c: &OperatorConfig<'_>| Ok(Box::new(Map::from_config(c)?) as Box<dyn Operator>)),
        "filter" => Arc::new(|c: &OperatorConfig<'_>| Ok(Box::new(Filter::from_config(c)?) as Box<dyn Operator>)),
        "count" => Arc::new(|c: &OperatorConfig<'_>| {
            c.check_fields(&[])?;
            Ok(Box::new(Aggregate { kind: Agg::Count }) as Box<dyn Operator>)
        }),
        "sum" => Arc::new(|c: &OperatorConfig<'_>| {
            c.check_fields(&[])?;
            Ok(Box::new(Aggregate { kind: Agg::Sum }) as Box<dyn Operator>)
        }),
        "reduce" => Arc::new(|c: &OperatorConfig<'_>| {
            c.check_fields(&["function"])?;
            let kind = match c.one_of("function", &["max", "min", "sum"])? {
                Some("max") => Agg::Max,
                Some("min") => Agg::Min,
                Some(_) => Agg::Sum,
                None => return Err(c.invalid("function", "missing", "one of: max, min, sum")),
            };
            Ok(Box::new(Aggregate { kind }) as Box<dyn Operator>)
        }),
        "window" => Arc::new(|c: &OperatorConfig<'_>| Ok(Box::new(Window::from_config(c)?) as Box<dyn Operator>)),
        other => unreachable!("not a built-in operator: {other}"),
    }
}

fn eval_error(expr: &Expression, e: crate::expr::EvalError) -> OperatorError {
    OperatorError::new(format!("{e} of expression \"{expr}\""))
}

// ---- map ----

enum MapFn {
    Expr(Expression),
    Identity,
    Double,
    Negate,
    Abs,
}

/// `map: { expr: "value * 2" }` or `map: { function: identity|double|negate|abs }`: sets
/// the record's value.
struct Map(MapFn);

impl Map {
    fn from_config(c: &OperatorConfig<'_>) -> Result<Map, OperatorConfigError> {
        c.check_fields(&["expr", "function"])?;
        let f = match (c.expression("expr")?, c.one_of("function", &["identity", "double", "negate", "abs"])?) {
            (Some(_), Some(_)) => {
                return Err(c.invalid("function", "both 'expr' and 'function' are set", "exactly one of them"))
            }
            (None, None) => {
                return Err(OperatorConfigError::Invalid {
                    field: None,
                    line: c.node().line,
                    problem: "neither 'expr' nor 'function' is set".to_string(),
                    expected: "expr: <integer expression> or function: identity|double|negate|abs".to_string(),
                })
            }
            (Some(e), None) => {
                if e.ty() != ExprType::Int {
                    return Err(c.invalid(
                        "expr",
                        format!("\"{e}\" is {}", e.ty()),
                        "an integer expression (the new value), e.g. value * 2",
                    ));
                }
                MapFn::Expr(e)
            }
            (None, Some("identity")) => MapFn::Identity,
            (None, Some("double")) => MapFn::Double,
            (None, Some("negate")) => MapFn::Negate,
            (None, Some(_)) => MapFn::Abs,
        };
        Ok(Map(f))
    }
}

impl Operator for Map {
    fn process(&mut self, mut record: Record, ctx: &mut OperatorContext<'_>) -> Result<(), OperatorError> {
        let v = record.value;
        let overflow = |f: &str| OperatorError::new(format!("integer overflow in function {f}"));
        record.value = match &self.0 {
            MapFn::Expr(e) => e.eval_i64(&record).map_err(|err| eval_error(e, err))?,
            MapFn::Identity => v,
            MapFn::Double => v.checked_mul(2).ok_or_else(|| overflow("double"))?,
            MapFn::Negate => v.checked_neg().ok_or_else(|| overflow("negate"))?,
            MapFn::Abs => v.checked_abs().ok_or_else(|| overflow("abs"))?,
        };
        ctx.emit(record);
        Ok(())
    }

    fn is_stateful(&self) -> bool {
        false
    }
}

// ---- filter ----

enum FilterFn {
    Expr(Expression),
    Even,
    Odd,
}

/// `filter: { expr: "value % 3 != 0" }` or `filter: { function: even|odd }`: keeps the
/// records for which the predicate holds.
struct Filter(FilterFn);

impl Filter {
    fn from_config(c: &OperatorConfig<'_>) -> Result<Filter, OperatorConfigError> {
        c.check_fields(&["expr", "function"])?;
        let f = match (c.expression("expr")?, c.one_of("function", &["even", "odd"])?) {
            (Some(_), Some(_)) => {
                return Err(c.invalid("function", "both 'expr' and 'function' are set", "exactly one of them"))
            }
            (None, None) => {
                return Err(OperatorConfigError::Invalid {
                    field: None,
                    line: c.node().line,
                    problem: "neither 'expr' nor 'function' is set".to_string(),
                    expected: "expr: <boolean expression> or function: even|odd".to_string(),
                })
            }
            (Some(e), None) => {
                if e.ty() != ExprType::Bool {
                    return Err(c.invalid(
                        "expr",
                        format!("\"{e}\" is {}", e.ty()),
                        "a boolean expression (true keeps the record), e.g. value % 3 != 0",
                    ));
                }
                FilterFn::Expr(e)
            }
            (None, Some("even")) => FilterFn::Even,
            (None, Some(_)) => FilterFn::Odd,
        };
        Ok(Filter(f))
    }
}

impl Operator for Filter {
    fn process(&mut self, record: Record, ctx: &mut OperatorContext<'_>) -> Result<(), OperatorError> {
        let keep = match &self.0 {
            FilterFn::Expr(e) => e.eval_bool(&record).map_err(|err| eval_error(e, err))?,
            FilterFn::Even => record.value % 2 == 0,
            FilterFn::Odd => record.value % 2 != 0,
        };
        if keep {
            ctx.emit(record);
        }
        Ok(())
    }

    fn is_stateful(&self) -> bool {
        false
    }
}

// ---- count, sum, reduce ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agg {
    Count,
    Sum,
    Max,
    Min,
}

/// Keyed running aggregates: for every record, update the key's state and emit
/// `(key, aggregate)`. `count` counts records, `sum` and `reduce: {function: sum}` add values,
/// `reduce: {function: max|min}` keep the extreme value.
struct Aggregate {
    kind: Agg,
}

impl Operator for Aggregate {
    fn process(&mut self, record: Record, ctx: &mut OperatorContext<'_>) -> Result<(), OperatorError> {
        let current = ctx.get_i64(&record.key)?;
        let overflow = || OperatorError::new(format!("integer overflow in the running sum of key {}", record.key));
        let next = match (self.kind, current) {
            (Agg::Count, c) => c.unwrap_or(0).checked_add(1).ok_or_else(overflow)?,
            (Agg::Sum, c) => c.unwrap_or(0).checked_add(record.value).ok_or_else(overflow)?,
            (Agg::Max, c) => c.map_or(record.value, |c| c.max(record.value)),
            (Agg::Min, c) => c.map_or(record.value, |c| c.min(record.value)),
        };
        if current != Some(next) {
            ctx.put_i64(&record.key, next)?;
        }
        ctx.emit(Record { key: record.key, value: next, seq: record.seq, window: None });
        Ok(())
    }
}

// ---- window ----

/// `window: { type: tumbling, size: N }`: a keyed tumbling window over the record sequence
/// number. Window `w` of a record with sequence number `s` starts at `s / N * N` and holds
/// `N` sequence numbers. A window closes when a record with a sequence number at or past its
/// end reaches the operator (any key: sequence numbers are the subtask's event time), or
/// when the input ends; it then emits `(key, window start, count)` with `seq` = the window's
/// last sequence number.
///
/// State: per key, `(window start, count)` of its open window (16 bytes). An in-memory index
/// of open windows by end is rebuilt from state in [`Operator::open`].
struct Window {
    size: u64,
    open: BTreeMap<u64, BTreeSet<String>>,
}

impl Window {
    fn from_config(c: &OperatorConfig<'_>) -> Result<Window, OperatorConfigError> {
        c.check_fields(&["type", "size"])?;
        c.one_of("type", &["tumbling"])?;
        let Some(size) = c.u64_at_least("size", 1)? else {
            return Err(c.invalid("size", "missing", "the window size in records, a whole number of at least 1"));
        };
        Ok(Window { size, open: BTreeMap::new() })
    }

    fn decode(bytes: &[u8]) -> Option<(u64, i64)> {
        let start = u64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?);
        let count = i64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        (bytes.len() == 16).then_some((start, count))
    }

    fn encode(start: u64, count: i64) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&start.to_be_bytes());
        out[8..].copy_from_slice(&count.to_be_bytes());
        out
    }

    fn read(ctx: &OperatorContext<'_>, key: &str) -> Result<Option<(u64, i64)>, OperatorError> {
        match ctx.get(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => Self::decode(&bytes).map(Some).ok_or_else(|| {
                OperatorError::new(format!("window state of key {key} holds {} bytes, expected 16", bytes.len()))
            }),
        }
    }

    /// Emits and forgets every open window whose end is at or before `until`.
    fn close_until(&mut self, until: u64, ctx: &mut OperatorContext<'_>) -> Result<(), OperatorError> {
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() > until {
                break;
            }
            let (end, keys) = entry.remove_entry();
            for key in keys {
                if let Some((start, count)) = Self::read(ctx, &key)? {
                    ctx.delete(key.as_bytes())?;
                    ctx.emit(Record { key, value: count, seq: end - 1, window: Some(start) });
                }
            }
        }
        Ok(())
    }
}

impl Operator for Window {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> Result<(), OperatorError> {
        let mut bad = None;
        let mut open = BTreeMap::<u64, BTreeSet<String>>::new();
        let size = self.size;
        ctx.for_each(&mut |k, v| match (std::str::from_utf8(k), Self::decode(v)) {
            (Ok(key), Some((start, _))) => {
                open.entry(start.saturating_add(size)).or_default().insert(key.to_string());
            }
            _ => bad = Some(String::from_utf8_lossy(k).into_owned()),
        })?;
        if let Some(key) = bad {
            return Err(OperatorError::new(format!("window state of key {key} is not a (start, count) pair")));
        }
        self.open = open;
        Ok(())
    }

    fn process(&mut self, record: Record, ctx: &mut OperatorContext<'_>) -> Result<(), OperatorError> {
        self.close_until(record.seq, ctx)?;
        let start = record.seq / self.size * self.size;
        let count = match Self::read(ctx, &record.key)? {
            Some((s, c)) if s == start => c + 1,
            Some((s, c)) => {
                // An older window of this key that is still open: sequence numbers went
                // backwards (a custom operator reordered them). Close it now.
                let end = s.saturating_add(self.size);
                if let Some(keys) = self.open.get_mut(&end) {
                    keys.remove(&record.key);
                }
                ctx.emit(Record { key: record.key.clone(), value: c, seq: end - 1, window: Some(s) });
                1
            }
            None => 1,
        };
        ctx.put(record.key.as_bytes(), &Self::encode(start, count))?;
        self.open.entry(start.saturating_add(self.size)).or_default().insert(record.key);
        Ok(())
    }

    fn finish(&mut self, ctx: &mut OperatorContext<'_>) -> Result<(), OperatorError> {
        self.close_until(u64::MAX, ctx)
    }
}

#[cfg(test)]
mod tests {
    use keel_state::{open_backend, BackendKind, KeyedStateBackend};

    use super::*;
    use crate::spec::YamlNode;

    fn build(name: &str, settings: &[(&str, &str)]) -> Box<dyn Operator> {
        let node = YamlNode::map_of(settings);
        factory(name)(&OperatorConfig::new(1, name, &node)).unwrap()
    }

    fn run(op: &mut dyn Operator, state: &mut dyn KeyedStateBackend, input: &[Record]) -> Vec<String> {
        let mut out = Vec::new();
        op.open(&mut OperatorContext::new(1, Some(&mut *state), &mut out)).unwrap();
        for r in input {
            op.process(r.clone(), &mut OperatorContext::new(1, Some(&mut *state), &mut out)).unwrap();
        }
        op.finish(&mut OperatorContext::new(1, Some(&mut *state), &mut out)).unwrap();
        out.iter().map(Record::to_line).collect()
    }

    fn recs(values: &[(&str, i64)]) -> Vec<Record> {
        values.iter().enumerate().map(|(i, (k, v))| Record::new(*k, *v, i as u64)).collect()
    }

    #[test]
    fn stateless_operators() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = open_backend(BackendKind::HashMap, tmp.path(), "s").unwrap();
        let input = recs(&[("a", 1), ("b", -2), ("a", 3)]);
        let mut m = build("map", &[("expr", "value * 10 + seq")]);
        assert!(!m.is_stateful());
        assert_eq!(run(m.as_mut(), state.as_mut(), &input), ["a,10", "b,-19", "a,32"]);
        let mut m = build("map", &[("function", "abs")]);
        assert_eq!(run(m.as_mut(), state.as_mut(), &input), ["a,1", "b,2", "a,3"]);
        let mut f = build("filter", &[("expr", "key == 'a' && value > 1")]);
        assert_eq!(run(f.as_mut(), state.as_mut(), &input), ["a,3"]);
        let mut f = build("filter", &[("function", "even")]);
        assert_eq!(run(f.as_mut(), state.as_mut(), &input), ["b,-2"]);
    }

    #[test]
    fn keyed_aggregates_share_a_backend_without_colliding() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = open_backend(BackendKind::HashMap, tmp.path(), "s").unwrap();
        let input = recs(&[("a", 5), ("b", 1), ("a", 2), ("a", 9)]);
        let mut count = build("count", &[]);
        assert_eq!(run(count.as_mut(), state.as_mut(), &input), ["a,1", "b,1", "a,2", "a,3"]);
        // A second operator at another step has its own namespace.
        let mut sum = factory("sum")(&OperatorConfig::new(2, "sum", &YamlNode::empty_map())).unwrap();
        let mut out = Vec::new();
        for r in &input {
            sum.process(r.clone(), &mut OperatorContext::new(2, Some(state.as_mut()), &mut out)).unwrap();
        }
        assert_eq!(out.iter().map(Record::to_line).collect::<Vec<_>>(), ["a,5", "b,1", "a,7", "a,16"]);
        let mut max = build("reduce", &[("function", "max")]);
        let tmp2 = tempfile::tempdir().unwrap();
        let mut fresh = open_backend(BackendKind::HashMap, tmp2.path(), "s").unwrap();
        assert_eq!(run(max.as_mut(), fresh.as_mut(), &input), ["a,5", "b,1", "a,5", "a,9"]);
        let mut min = build("reduce", &[("function", "min")]);
        let mut fresh2 = open_backend(BackendKind::HashMap, tmp2.path(), "t").unwrap();
        assert_eq!(run(min.as_mut(), fresh2.as_mut(), &input), ["a,5", "b,1", "a,2", "a,2"]);
    }

    #[test]
    fn window_closes_on_progress_and_at_the_end_and_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = open_backend(BackendKind::RocksDb, tmp.path(), "w").unwrap();
        let input: Vec<Record> = (0..25u64).map(|n| Record::new(format!("k{}", n % 2), 1, n)).collect();
        let mut w = build("window", &[("type", "tumbling"), ("size", "10")]);
        let mut out = Vec::new();
        w.open(&mut OperatorContext::new(1, Some(state.as_mut()), &mut out)).unwrap();
        for r in &input[..15] {
            w.process(r.clone(), &mut OperatorContext::new(1, Some(state.as_mut()), &mut out)).unwrap();
        }
        assert_eq!(out.iter().map(Record::to_line).collect::<Vec<_>>(), ["k0,0,5", "k1,0,5"]);
        // A new operator instance (a restart) rebuilds its index from state.
        let mut w = build("window", &[("size", "10")]);
        let rest = run(w.as_mut(), state.as_mut(), &input[15..]);
        assert_eq!(rest, ["k0,10,5", "k1,10,5", "k0,20,3", "k1,20,2"]);
        assert_eq!(out[0].seq, 9);
    }

    #[test]
    fn record_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = open_backend(BackendKind::HashMap, tmp.path(), "s").unwrap();
        let mut m = build("map", &[("expr", "value / (value - 5)")]);
        let mut out = Vec::new();
        let err = m.process(Record::new("k", 5, 5), &mut OperatorContext::new(1, Some(state.as_mut()), &mut out));
        assert_eq!(err.unwrap_err().to_string(), "division by zero at column 7 of expression \"value / (value - 5)\"");
        let mut m = build("map", &[("function", "negate")]);
        let err = m.process(Record::new("k", i64::MIN, 0), &mut OperatorContext::new(1, None, &mut out));
        assert_eq!(err.unwrap_err().to_string(), "integer overflow in function negate");
        let mut c = build("count", &[]);
        let err = c.process(Record::new("k", 1, 0), &mut OperatorContext::new(1, None, &mut out));
        assert!(err.unwrap_err().to_string().contains("declared itself stateless"));
    }
}

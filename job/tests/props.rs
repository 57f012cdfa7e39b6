//! Property tests: the expression parser and the job spec parser never panic on random or
//! mutated input, and their work is bounded by the documented limits (accepted expressions
//! nest at most `MAX_EXPR_DEPTH` deep, so evaluation cannot overflow a stack).

use keel_job::{parse_job_spec, Expression, Record, MAX_EXPR_DEPTH, MAX_EXPR_LEN};
use proptest::prelude::*;

const EXPR_SEEDS: &[&str] = &[
    "value * 2",
    "value % 3 != 0",
    "key == \"k1\" && (seq > 10 || !(value <= 6))",
    "-(-(value + 1)) / (seq - 3)",
    "((((value))))",
    "value / 0",
    "1 < 2 < 3",
];

const SPEC_SEEDS: &[&str] = &[
    "name: counts\nparallelism: 2\ncheckpoint-interval: 1 s\nrestart-strategy: { type: fixed-delay, attempts: 5, delay: 500 ms }\npipeline:\n  - source: { type: sequence, count: 100000, keys: 16, rate: 2000 }\n  - map: { expr: \"value * 2\" }\n  - filter: { expr: \"value % 3 != 0\" }\n  - count: {}\n  - reduce: { function: max }\n  - window: { type: tumbling, size: 100 }\n  - sink: { type: file, path: file:///abs/out }\n",
    "name: f\npipeline:\n  - source: { type: file, path: /data/in.txt, key-field: 0, delimiter: \",\" }\n  - sink: { type: print }\n",
    "name: bomb\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
    "? [a, {b: c}]\n: &x {d: [1, 2, *x]}\n---\nname: second\n",
];

/// Random edits of a seed: (position, kind, byte); kinds: 0 replace, 1 insert, 2 delete,
/// 3 duplicate a slice (so nesting and repetition grow quickly).
fn mutate(seed: &str, edits: &[(usize, u8, u8)]) -> String {
    let mut bytes = seed.as_bytes().to_vec();
    for &(at, kind, b) in edits {
        if bytes.is_empty() {
            bytes.push(b);
            continue;
        }
        let i = at % bytes.len();
        match kind % 4 {
            0 => bytes[i] = b,
            1 => bytes.insert(i, b),
            2 => {
                bytes.remove(i);
            }
            _ => {
                let end = (i + 1 + usize::from(b) % 32).min(bytes.len());
                let slice = bytes[i..end].to_vec();
                for _ in 0..(usize::from(b) % 8) {
                    bytes.splice(i..i, slice.iter().copied());
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Characters that matter to the expression grammar, to make random text likely to parse.
fn expr_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "(",
            ")",
            "-",
            "!",
            "+",
            "*",
            "/",
            "%",
            "==",
            "!=",
            "<",
            ">=",
            "&&",
            "||",
            "value",
            "seq",
            "key",
            "0",
            "1",
            "9223372036854775807",
            "'k'",
            "true",
            " ",
        ]),
        0..300,
    )
    .prop_map(|parts| parts.concat())
}

fn check_expression(text: &str) {
    if let Ok(e) = Expression::parse(text) {
        assert!(text.len() <= MAX_EXPR_LEN);
        // Every accepted expression evaluates without panicking (errors are fine).
        for r in [
            Record { key: "k".into(), value: i64::MIN, seq: u64::MAX, window: None },
            Record { key: "x".into(), value: 0, seq: 0, window: None },
            Record { key: "k".into(), value: -1, seq: 7, window: None },
        ] {
            let _ = e.eval(&r);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn expressions_from_grammar_tokens_never_panic(text in expr_text()) {
        check_expression(&text);
    }

    #[test]
    fn mutated_expressions_never_panic(
        seed in prop::sample::select(EXPR_SEEDS.to_vec()),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..12),
    ) {
        check_expression(&mutate(seed, &edits));
    }

    #[test]
    fn arbitrary_strings_never_panic_the_expression_parser(text in ".{0,200}") {
        check_expression(&text);
    }

    #[test]
    fn nesting_beyond_the_limit_is_always_refused(depth in (MAX_EXPR_DEPTH + 1)..3000, unary in any::<bool>()) {
        let text = if unary {
            format!("{}value", "-".repeat(depth))
        } else {
            format!("{}value{}", "(".repeat(depth), ")".repeat(depth))
        };
        let err = Expression::parse(&text).unwrap_err();
        prop_assert!(err.message.contains("the limit is"), "{}", err.message);
    }

    #[test]
    fn mutated_job_specs_never_panic(
        seed in prop::sample::select(SPEC_SEEDS.to_vec()),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..16),
    ) {
        let text = mutate(seed, &edits);
        match parse_job_spec(&text, "job.yaml") {
            Ok(spec) => prop_assert!(spec.parallelism >= 1),
            // Every error says where: it starts with the origin.
            Err(e) => prop_assert!(e.to_string().starts_with("job.yaml"), "{e}"),
        }
    }

    #[test]
    fn random_yaml_never_panics_the_spec_parser(text in "[-\\[\\]{}:,&*!|>'\"#? \n a-z0-9]{0,400}") {
        let _ = parse_job_spec(&text, "job.yaml");
    }
}

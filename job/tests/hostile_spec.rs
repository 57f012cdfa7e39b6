//! Hostile job specs: each is refused with an error that names the limit or the check, where
//! it applies (`pipeline[2].map.expr`), and quotes at most a short excerpt of the value.

use keel_job::{
    parse_job_spec, MAX_EXPR_DEPTH, MAX_EXPR_LEN, MAX_SPEC_BYTES, MAX_YAML_DEPTH, MAX_YAML_EXPANDED_BYTES,
    MAX_YAML_NODES,
};

fn err(yaml: &str) -> String {
    parse_job_spec(yaml, "job.yaml").unwrap_err().to_string()
}

/// source, `step` as pipeline[1], `step2` as pipeline[2], sink.
fn spec(step: &str, step2: &str) -> String {
    format!(
        "name: j\npipeline:\n  - source: {{ type: sequence, count: 10 }}\n  - {step}\n  - {step2}\n  - sink: {{ type: discard }}\n"
    )
}

fn sink(path: &str) -> String {
    format!("name: j\npipeline:\n  - source: {{ type: sequence }}\n  - sink: {{ type: file, path: \"{path}\" }}\n")
}

fn source(path: &str) -> String {
    format!("name: j\npipeline:\n  - source: {{ type: file, path: \"{path}\" }}\n  - sink: {{ type: discard }}\n")
}

#[test]
fn deep_expressions_name_the_limit_and_the_step() {
    // The spec: 2,000 nested parentheses (about 4 KB) overflowed the stack.
    let deep = format!("{}value{}", "(".repeat(2000), ")".repeat(2000));
    let e = err(&spec("count: {}", &format!("map: {{ expr: \"{deep}\" }}")));
    assert!(e.starts_with("job.yaml:5: pipeline[2].map.expr: invalid expression \""), "{e}");
    assert!(e.contains("the limit is"), "{e}");
    assert!(e.len() < 600, "{} bytes: {e}", e.len());
    let deep = format!("{}value{}", "(".repeat(MAX_EXPR_DEPTH + 1), ")".repeat(MAX_EXPR_DEPTH + 1));
    let e = err(&spec("count: {}", &format!("map: {{ expr: \"{deep}\" }}")));
    assert!(e.contains(&format!("nests more than {MAX_EXPR_DEPTH} levels deep")), "{e}");
    assert!(e.contains("pipeline[2].map.expr"), "{e}");
    let long = format!("value{}", " + 1".repeat(MAX_EXPR_LEN));
    let e = err(&spec("count: {}", &format!("filter: {{ expr: \"{long} > 0\" }}")));
    assert!(e.contains(&format!("the limit is {MAX_EXPR_LEN} bytes")), "{e}");
    assert!(e.contains("pipeline[2].filter.expr"), "{e}");
    assert!(e.len() < 600, "{} bytes: {e}", e.len());
}

#[test]
fn literal_division_by_zero_is_refused() {
    assert_eq!(
        err(&spec("count: {}", "map: { expr: \"value / 0\" }")),
        "job.yaml:5: pipeline[2].map.expr: invalid expression \"value / 0\": column 7: division by zero: the right \
         side of '/' is always 0; expected a divisor that is not 0"
    );
    let e = err(&spec("filter: { expr: \"value % (2 - 2) == 1\" }", "count: {}"));
    assert!(e.starts_with("job.yaml:4: pipeline[1].filter.expr:"), "{e}");
    assert!(e.contains("remainder by zero"), "{e}");
}

#[test]
fn paths_that_can_only_fail_are_refused() {
    let e = err(&sink("out/dir"));
    assert!(e.contains("pipeline[1].sink.path: 'out/dir' is neither a URI nor an absolute path"), "{e}");
    let e = err(&sink("/data/../etc/out"));
    assert_eq!(
        e,
        "job.yaml:4: pipeline[1].sink.path: '/data/../etc/out': path segment \"..\" is not allowed; expected a \
         storage URI (file:///absolute/path, s3://bucket/prefix, hdfs://namenode/path, swift://container/prefix) or \
         an absolute path, without . or .. segments"
    );
    assert!(err(&sink("file:///data/./out")).contains("path segment \".\" is not allowed"));
    assert!(err(&sink("s3://bucket/a/../b")).contains("path segment \"..\" is not allowed"));
    let e = err(&sink("gs://bucket/out"));
    assert!(e.contains("pipeline[1].sink.path: 'gs://bucket/out': unknown scheme \"gs\""), "{e}");
    assert!(err(&sink("ftp://host/out")).contains("unknown scheme \"ftp\""));
    assert!(err(&sink("file://host/out")).contains("a file URI has no host"));
    assert!(err(&sink("file:///")).contains("cannot be the filesystem root"));
    // Accepted: every scheme the storage layer knows, canonicalized.
    for (given, uri) in [
        ("/abs/out/", "file:///abs/out"),
        ("file:///a//b", "file:///a/b"),
        ("s3://bucket/prefix/", "s3://bucket/prefix"),
        ("hdfs://nn:8020/out", "hdfs://nn:8020/out"),
        ("swift://container/p", "swift://container/p"),
    ] {
        let s = parse_job_spec(&sink(given), "job.yaml").unwrap();
        assert_eq!(s.sink, keel_job::SinkSpec::File { uri: uri.into() }, "{given}");
    }
    let e = err(&source("../in.txt"));
    assert!(e.contains("pipeline[0].source.path: '../in.txt' is not an absolute path"), "{e}");
    let e = err(&source("/data/../etc/passwd"));
    assert!(e.contains("pipeline[0].source.path: '/data/../etc/passwd' has a '..' segment"), "{e}");
    assert!(err(&source("file:///data/./in")).contains("has a '.' segment"));
}

#[test]
fn yaml_bombs_and_sizes_name_the_limit() {
    // 9 levels of 9 aliases: ~400 bytes that expand to 387 million nodes.
    let mut bomb = "name: j\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_string();
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!("l{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"));
    }
    let e = err(&bomb);
    assert!(e.starts_with("job.yaml:"), "{e}");
    assert!(e.contains(&format!("the limit is {MAX_YAML_NODES} nodes")), "{e}");
    let big = format!("name: &x {}\nl: [{}]\n", "y".repeat(200_000), vec!["*x"; 30].join(", "));
    assert!(err(&big).contains(&format!("the limit is {MAX_YAML_EXPANDED_BYTES} bytes")));
    let deep = format!("name: j\nx: {}1{}\n", "[".repeat(MAX_YAML_DEPTH + 1), "]".repeat(MAX_YAML_DEPTH + 1));
    assert!(err(&deep).contains(&format!("nest more than {MAX_YAML_DEPTH} levels deep; the limit is {MAX_YAML_DEPTH}")));
    let huge = format!("name: j\n# {}\n", "x".repeat(MAX_SPEC_BYTES));
    assert_eq!(
        err(&huge),
        format!("job.yaml: the job spec is {} bytes long; the limit is {MAX_SPEC_BYTES} bytes (1 MiB)", huge.len())
    );
}

#[test]
fn errors_quote_excerpts_of_huge_values() {
    let long = "z".repeat(900_000);
    for text in [
        format!("name: j\n{long}: 1\n"),
        format!("name: j\nparallelism: {long}\n"),
        sink(&format!("/{long}/../x")),
        sink(&format!("gs://{long}")),
        source(&long),
        format!("name: j\ncheckpoint-interval: {long}\n"),
        format!("name: j\nrestart-strategy: {long}\n"),
        spec(&format!("{long}: {{}}"), "count: {}"),
        spec(&format!("map: {{ expr: \"{long}\" }}"), "count: {}"),
        spec(&format!("reduce: {{ function: {long} }}"), "count: {}"),
        spec(&format!("window: {{ type: tumbling, size: {long} }}"), "count: {}"),
    ] {
        let e = err(&text);
        assert!(e.len() < 1000, "{} bytes: {}", e.len(), e.chars().take(300).collect::<String>());
        assert!(!e.contains(&"z".repeat(81)), "{e}");
    }
}

//! Job spec parsing: the full format, and every error with its exact text.

use std::path::PathBuf;
use std::time::Duration;

use keel_job::{
    parse_job_spec, JobSpec, JobSpecError, Location, OperatorRegistry, OperatorSpec, RestartStrategy, SinkSpec,
    SourceSpec, YamlNode,
};

const FULL: &str = "\
name: counts
parallelism: 2
checkpoint-interval: 1 s
restart-strategy: { type: fixed-delay, attempts: 5, delay: 500 ms }
pipeline:
  - source: { type: sequence, count: 100000, keys: 16, rate: 2000 }
  - map: { expr: \"value * 2\" }
  - filter: { expr: \"value % 3 != 0\" }
  - count: {}
  - sum:
  - reduce: { function: max }
  - window: { type: tumbling, size: 100 }
  - sink: { type: file, path: file:///abs/out }
";

fn err(yaml: &str) -> String {
    parse_job_spec(yaml, "job.yaml").unwrap_err().to_string()
}

/// A valid spec with `step` as its only operator.
fn with_step(step: &str) -> String {
    format!(
        "name: j\npipeline:\n  - source: {{ type: sequence, count: 10 }}\n  - {step}\n  - sink: {{ type: discard }}\n"
    )
}

#[test]
fn full_spec_parses() {
    let spec = parse_job_spec(FULL, "job.yaml").unwrap();
    assert_eq!(spec.name, "counts");
    assert_eq!(spec.parallelism, 2);
    assert_eq!(spec.checkpoint_interval, Duration::from_secs(1));
    assert_eq!(spec.restart_strategy, RestartStrategy::FixedDelay { attempts: 5, delay: Duration::from_millis(500) });
    assert_eq!(spec.source, SourceSpec::Sequence { count: Some(100_000), keys: 16, rate: Some(2000) });
    assert_eq!(
        spec.operators.iter().map(|o| (o.name.as_str(), o.line)).collect::<Vec<_>>(),
        [("map", 7), ("filter", 8), ("count", 9), ("sum", 10), ("reduce", 11), ("window", 12)]
    );
    assert_eq!(spec.sink, SinkSpec::File { uri: "file:///abs/out".into() });
    assert_eq!(spec.sink_step(), 7);
    assert_eq!(spec.origin, "job.yaml");
    spec.validate(&OperatorRegistry::new()).unwrap();
}

#[test]
fn defaults_and_other_forms() {
    let spec = parse_job_spec(
        "name: files\npipeline:\n  - source: { type: file, path: /data/in.txt, key-field: 2, delimiter: ';' }\n  \
         - map: { function: negate }\n  - filter: { function: odd }\n  - sink: { type: print }\n",
        "f.yaml",
    )
    .unwrap();
    assert_eq!(spec.parallelism, 1);
    assert_eq!(spec.checkpoint_interval, Duration::from_secs(10));
    assert_eq!(spec.restart_strategy, RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_secs(1) });
    assert_eq!(
        spec.source,
        SourceSpec::File { path: PathBuf::from("/data/in.txt"), key_field: Some(2), delimiter: ";".into() }
    );
    assert_eq!(spec.sink, SinkSpec::Print);

    let spec = parse_job_spec(
        "name: n\ncheckpoint-interval: 250\nrestart-strategy: { type: none }\npipeline:\n  \
         - source: { type: sequence }\n  - sink: { type: file, path: /abs/out/ }\n",
        "n.yaml",
    )
    .unwrap();
    assert_eq!(spec.checkpoint_interval, Duration::from_millis(250));
    assert_eq!(spec.restart_strategy, RestartStrategy::None);
    assert_eq!(spec.source, SourceSpec::Sequence { count: None, keys: 1, rate: None });
    assert!(!spec.source.is_bounded());
    assert_eq!(spec.sink, SinkSpec::File { uri: "file:///abs/out".into() });
    assert!(spec.operators.is_empty());

    let spec = parse_job_spec(
        "name: n\nrestart-strategy: none\npipeline:\n- source: {type: sequence, count: 5}\n- sink: {type: discard}\n",
        "n.yaml",
    )
    .unwrap();
    assert_eq!(spec.restart_strategy, RestartStrategy::None);
    assert_eq!(spec.sink, SinkSpec::Discard);
}

#[test]
fn parallelism_errors() {
    let p = |v: &str| {
        err(&format!(
            "name: j\nparallelism: {v}\npipeline:\n  - source: {{type: sequence}}\n  - sink: {{type: discard}}\n"
        ))
    };
    assert_eq!(p("0"), "job.yaml:2: parallelism: 0 is too small; expected a whole number from 1 to 1024");
    assert_eq!(p("-2"), "job.yaml:2: parallelism: -2 is negative; expected a whole number from 1 to 1024");
    assert_eq!(
        p("1.5"),
        "job.yaml:2: parallelism: '1.5' is not a whole number; expected a whole number from 1 to 1024"
    );
    assert_eq!(
        p("two"),
        "job.yaml:2: parallelism: 'two' is not a whole number; expected a whole number from 1 to 1024"
    );
    assert_eq!(p("1025"), "job.yaml:2: parallelism: 1025 is too large; expected a whole number from 1 to 1024");
    assert_eq!(p("[2]"), "job.yaml:2: parallelism: found a list; expected a whole number from 1 to 1024");
}

#[test]
fn pipeline_shape_errors() {
    assert_eq!(
        err("name: j\npipeline:\n  - map: { function: double }\n  - sink: { type: discard }\n"),
        "job.yaml:3: pipeline[0]: the first step must be a source, found 'map'; expected - source: { type: sequence | file, ... }"
    );
    assert_eq!(
        err("name: j\npipeline:\n  - source: { type: sequence }\n  - count: {}\n"),
        "job.yaml:4: pipeline[1]: the last step must be a sink, found 'count'; expected - sink: { type: file | print | discard, ... }"
    );
    assert_eq!(
        err("name: j\npipeline:\n  - source: { type: sequence }\n  - sink: { type: discard }\n  - count: {}\n  - sink: { type: print }\n"),
        "job.yaml:4: pipeline[1]: the sink must be the last step, found 2 more step(s) after it"
    );
    assert_eq!(
        err("name: j\npipeline:\n  - source: { type: sequence }\n  - source: { type: sequence }\n  - sink: { type: print }\n"),
        "job.yaml:4: pipeline[1]: a source can only be the first step (a pipeline has exactly one source)"
    );
    assert_eq!(
        err("name: j\npipeline: []\n"),
        "job.yaml:2: pipeline: empty; expected a list of steps: a source, operators, a sink"
    );
    assert_eq!(
        err("name: j\n"),
        "job.yaml:1: pipeline: missing; expected a list of steps: a source, operators, a sink"
    );
    assert_eq!(
        err("name: j\npipeline:\n  - source: { type: sequence }\n    count: {}\n  - sink: { type: print }\n"),
        "job.yaml:3: pipeline[0]: a step names exactly one operator, found 2: source, count; expected - <operator>: { settings }, e.g. - count: {} (settings are indented under the operator)"
    );
    assert_eq!(
        err(&with_step("count")),
        "job.yaml:4: pipeline[1]: found the value 'count'; expected - <operator>: { settings }, e.g. - count: {} (write '- count: {}' for no settings)"
    );
    assert_eq!(
        err(&with_step("map: { function: double }\n    filter: { function: odd }")),
        "job.yaml:4: pipeline[1]: a step names exactly one operator, found 2: map, filter; expected - <operator>: { settings }, e.g. - count: {} (settings are indented under the operator)"
    );
    assert_eq!(err(""), "job.yaml:1: the job spec is empty; expected a mapping with name, parallelism, checkpoint-interval, restart-strategy and pipeline");
    assert_eq!(
        err("- a\n- b\n"),
        "job.yaml:1: the top level must be a mapping (name: ..., pipeline: ...), found a list"
    );
    assert_eq!(
        err("name: [\n"),
        "job.yaml:2:1: invalid YAML: while parsing a node, did not find expected node content"
    );
}

#[test]
fn unknown_operators_and_fields() {
    assert_eq!(
        err(&with_step("cuont: {}")),
        "job.yaml:4: pipeline[1]: unknown operator 'cuont' (did you mean 'count'?); expected one of: source, map, filter, count, sum, reduce, window, sink"
    );
    assert_eq!(
        err(&with_step("flatmap: {}")),
        "job.yaml:4: pipeline[1]: unknown operator 'flatmap'; expected one of: source, map, filter, count, sum, reduce, window, sink"
    );
    assert_eq!(
        err(&with_step("map: { exp: \"value\" }")),
        "job.yaml:4: pipeline[1].map: unknown field 'exp' (did you mean 'expr'?); expected one of: expr, function"
    );
    assert_eq!(
        err(&with_step("count: { key: x }")),
        "job.yaml:4: pipeline[1].count: unknown field 'key'; expected one of: "
    );
    assert_eq!(
        err("name: j\nparalelism: 2\npipeline:\n  - source: { type: sequence }\n  - sink: { type: print }\n"),
        "job.yaml:2: unknown field 'paralelism' (did you mean 'parallelism'?); expected one of: name, parallelism, checkpoint-interval, restart-strategy, pipeline"
    );
    assert_eq!(
        err("name: j\npipeline:\n  - source: { type: sequence, count: 5, key: 3 }\n  - sink: { type: print }\n"),
        "job.yaml:3: pipeline[0].source: unknown field 'key' (did you mean 'keys'?); expected one of: type, count, keys, rate"
    );
    assert_eq!(
        err("name: j\npipeline:\n  - source: { type: sequence }\n  - sink: { type: print, path: /x }\n"),
        "job.yaml:4: pipeline[1].sink: unknown field 'path'; expected one of: type"
    );
}

#[test]
fn operator_settings_errors() {
    assert_eq!(
        err(&with_step("map: {}")),
        "job.yaml:4: pipeline[1].map: neither 'expr' nor 'function' is set; expected expr: <integer expression> or function: identity|double|negate|abs"
    );
    assert_eq!(
        err(&with_step("map: { expr: \"value > 2\" }")),
        "job.yaml:4: pipeline[1].map.expr: \"value > 2\" is a boolean; expected an integer expression (the new value), e.g. value * 2"
    );
    assert_eq!(
        err(&with_step("filter: { expr: \"value * 2\" }")),
        "job.yaml:4: pipeline[1].filter.expr: \"value * 2\" is an integer; expected a boolean expression (true keeps the record), e.g. value % 3 != 0"
    );
    assert_eq!(
        err(&with_step("map: { function: triple }")),
        "job.yaml:4: pipeline[1].map.function: unknown value 'triple'; expected one of: identity, double, negate, abs"
    );
    assert_eq!(
        err(&with_step("map: { expr: \"value\", function: abs }")),
        "job.yaml:4: pipeline[1].map.function: both 'expr' and 'function' are set; expected exactly one of them"
    );
    assert_eq!(
        err(&with_step("reduce: { function: avg }")),
        "job.yaml:4: pipeline[1].reduce.function: unknown value 'avg'; expected one of: max, min, sum"
    );
    assert_eq!(
        err(&with_step("reduce: {}")),
        "job.yaml:4: pipeline[1].reduce.function: missing; expected one of: max, min, sum"
    );
    assert_eq!(
        err(&with_step("window: { type: sliding, size: 10 }")),
        "job.yaml:4: pipeline[1].window.type: unknown value 'sliding'; expected one of: tumbling"
    );
    assert_eq!(
        err(&with_step("window: { size: 0 }")),
        "job.yaml:4: pipeline[1].window.size: 0 is too small; expected a whole number of at least 1"
    );
    assert_eq!(
        err(&with_step("window:\n      type: tumbling")),
        "job.yaml:4: pipeline[1].window.size: missing; expected the window size in records, a whole number of at least 1"
    );
    assert_eq!(
        err(&with_step("count: [1]")),
        "job.yaml:4: pipeline[1].count: the settings are a list; expected no settings ({})"
    );
}

#[test]
fn expression_errors_name_step_field_and_column() {
    assert_eq!(
        err(&with_step("map: { expr: \"value * \" }")),
        "job.yaml:4: pipeline[1].map.expr: invalid expression \"value * \": column 9: expected an operand (a number, value, seq, key, a string, true, false or '('), found the end"
    );
    assert_eq!(
        err(&with_step("filter:\n      expr: \"key < 'k2'\"")),
        "job.yaml:5: pipeline[1].filter.expr: invalid expression \"key < 'k2'\": column 5: strings can only be compared with == and !=, not with '<'"
    );
    assert_eq!(
        err(&with_step("map: { expr: \"(value + 1\" }")),
        "job.yaml:4: pipeline[1].map.expr: invalid expression \"(value + 1\": column 11: expected ')' to close the '(' at column 1, found the end"
    );
}

#[test]
fn source_sink_errors() {
    let src = |s: &str| err(&format!("name: j\npipeline:\n  - source: {s}\n  - sink: {{ type: discard }}\n"));
    assert_eq!(src("{ count: 5 }"), "job.yaml:3: pipeline[0].source.type: missing; expected one of: sequence, file");
    assert_eq!(
        src("{ type: kafka }"),
        "job.yaml:3: pipeline[0].source.type: unknown value 'kafka'; expected one of: sequence, file"
    );
    assert_eq!(
        src("{ type: sequnce }"),
        "job.yaml:3: pipeline[0].source.type: unknown value 'sequnce' (did you mean 'sequence'?); expected one of: sequence, file"
    );
    assert_eq!(
        src("{ type: sequence, keys: 0 }"),
        "job.yaml:3: pipeline[0].source.keys: 0 is too small; expected a whole number of at least 1"
    );
    assert_eq!(
        src("{ type: sequence, count: -5 }"),
        "job.yaml:3: pipeline[0].source.count: -5 is negative; expected a whole number of at least 0"
    );
    assert_eq!(
        src("{ type: file, path: in.txt }"),
        "job.yaml:3: pipeline[0].source.path: 'in.txt' is not an absolute path; expected the absolute path of the input file without . or .. segments (/data/input.txt or file:///data/input.txt)"
    );
    assert_eq!(
        src("{ type: file }"),
        "job.yaml:3: pipeline[0].source.path: missing; expected the absolute path of the input file"
    );
    let sink = |s: &str| err(&format!("name: j\npipeline:\n  - source: {{ type: sequence }}\n  - sink: {s}\n"));
    assert_eq!(
        sink("{ type: file, path: out }"),
        "job.yaml:4: pipeline[1].sink.path: 'out' is neither a URI nor an absolute path; expected a storage URI (file:///absolute/path, s3://bucket/prefix, hdfs://namenode/path, swift://container/prefix) or an absolute path, without . or .. segments"
    );
    assert_eq!(
        sink("{ type: kafka }"),
        "job.yaml:4: pipeline[1].sink.type: unknown value 'kafka'; expected one of: file, print, discard"
    );
}

#[test]
fn durations_restart_strategies_and_names() {
    let top = |s: &str| {
        err(&format!("name: j\n{s}\npipeline:\n  - source: {{ type: sequence }}\n  - sink: {{ type: discard }}\n"))
    };
    assert_eq!(
        top("checkpoint-interval: 1 sec x"),
        "job.yaml:2: checkpoint-interval: invalid duration '1 sec x': unknown time unit 'sec x'; expected a duration: a whole number of milliseconds (60000) or a whole number and a unit (500 ms, 5 s, 5s, 1 min, 2 h, 1 d); units: ns, us, µs, ms, s, m, min, h, d or their names (nanos, micros, millis, secs, seconds, minutes, hours, days)"
    );
    assert_eq!(
        top("checkpoint-interval: 5 ms"),
        "job.yaml:2: checkpoint-interval: 5 ms is too short; expected at least 10 ms"
    );
    assert_eq!(
        top("restart-strategy: { type: exponential-delay }"),
        "job.yaml:2: restart-strategy.type: unknown restart strategy 'exponential-delay'; expected one of: fixed-delay, none"
    );
    assert_eq!(
        top("restart-strategy: fixed-dealy"),
        "job.yaml:2: restart-strategy: unknown restart strategy 'fixed-dealy' (did you mean 'fixed-delay'?); expected one of: fixed-delay, none"
    );
    assert_eq!(
        top("restart-strategy: { type: fixed-delay, delay: soon }"),
        "job.yaml:2: restart-strategy.delay: invalid duration 'soon': a duration starts with a whole number; expected a duration: a whole number of milliseconds (60000) or a whole number and a unit (500 ms, 5 s, 5s, 1 min, 2 h, 1 d); units: ns, us, µs, ms, s, m, min, h, d or their names (nanos, micros, millis, secs, seconds, minutes, hours, days)"
    );
    assert_eq!(
        top("restart-strategy: { type: fixed-delay, attempts: -1 }"),
        "job.yaml:2: restart-strategy.attempts: -1 is negative; expected a whole number of at least 0"
    );
    assert_eq!(
        top("restart-strategy: { type: none, attempts: 3 }"),
        "job.yaml:2: restart-strategy: unknown field 'attempts'; expected one of: type"
    );
    assert_eq!(
        err("parallelism: 1\npipeline:\n  - source: { type: sequence }\n  - sink: { type: discard }\n"),
        "job.yaml:1: name: missing; expected the job's name (a non-empty string)"
    );
    assert_eq!(
        err("name: ''\npipeline:\n  - source: { type: sequence }\n  - sink: { type: discard }\n"),
        "job.yaml:1: name: found the value ''; expected the job's name (a non-empty string)"
    );
}

#[test]
fn errors_are_matchable() {
    let e = parse_job_spec(&with_step("cuont: {}"), "job.yaml").unwrap_err();
    assert!(matches!(&e, JobSpecError::UnknownOperator { step: 1, suggestion: Some(s), .. } if s == "count"));
    assert_eq!(e.location(), &Location { origin: "job.yaml".into(), line: 4 });
    let e = parse_job_spec(&with_step("map: { expr: \"1 +\" }"), "job.yaml").unwrap_err();
    assert!(matches!(e, JobSpecError::Expression { column: 4, .. }), "{e:?}");
}

#[test]
fn validate_checks_specs_built_in_code() {
    let mut spec = JobSpec {
        name: "built".into(),
        parallelism: 2,
        checkpoint_interval: Duration::from_millis(100),
        restart_strategy: RestartStrategy::None,
        source: SourceSpec::Sequence { count: Some(10), keys: 4, rate: None },
        operators: vec![OperatorSpec { name: "count".into(), config: YamlNode::empty_map(), line: 0 }],
        sink: SinkSpec::File { uri: "file:///tmp/out".into() },
        origin: "code".into(),
    };
    let registry = OperatorRegistry::new();
    spec.validate(&registry).unwrap();
    spec.parallelism = 0;
    assert_eq!(
        spec.validate(&registry).unwrap_err().to_string(),
        "code: parallelism: 0 is too small; expected a whole number from 1 to 1024"
    );
    spec.parallelism = 1;
    spec.operators[0] =
        OperatorSpec { name: "reduce".into(), config: YamlNode::map_of(&[("function", "mean")]), line: 0 };
    assert_eq!(
        spec.validate(&registry).unwrap_err().to_string(),
        "code: pipeline[1].reduce.function: unknown value 'mean'; expected one of: max, min, sum"
    );
    spec.operators[0].name = "nope".into();
    assert_eq!(
        spec.validate(&registry).unwrap_err().to_string(),
        "code: pipeline[1]: unknown operator 'nope'; expected one of: map, filter, count, sum, reduce, window"
    );
}

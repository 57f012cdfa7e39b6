//! Cluster-wide defaults (`parallelism.default`, `execution.checkpointing.interval`,
//! `restart-strategy.*`) fill what a spec leaves out; what a spec sets wins.

use std::time::Duration;

use keel_job::{parse_job_spec_with_defaults, JobDefaults, OperatorRegistry, RestartStrategy};

const PIPELINE: &str =
    "pipeline:\n  - source: { type: sequence, count: 10 }\n  - count: {}\n  - sink: { type: file, path: /tmp/out }\n";

#[test]
fn configuration_defaults_fill_what_the_spec_leaves_out() {
    let config = keel_conf::from_str(
        "parallelism.default: 4\nexecution.checkpointing.interval: 250 ms\nrestart-strategy: fixed-delay\n\
         restart-strategy.fixed-delay.attempts: 9\nrestart-strategy.fixed-delay.delay: 3 s\n",
        "conf/config.yaml",
        &[],
    )
    .unwrap()
    .config;
    let defaults = JobDefaults::from_config(&config);
    let registry = OperatorRegistry::new();
    let spec = parse_job_spec_with_defaults(&format!("name: a\n{PIPELINE}"), "a.yaml", &registry, &defaults).unwrap();
    assert_eq!(spec.parallelism, 4);
    assert_eq!(spec.checkpoint_interval, Duration::from_millis(250));
    assert_eq!(spec.restart_strategy, RestartStrategy::FixedDelay { attempts: 9, delay: Duration::from_secs(3) });

    let own = format!("name: a\nparallelism: 2\ncheckpoint-interval: 1 s\nrestart-strategy: none\n{PIPELINE}");
    let spec = parse_job_spec_with_defaults(&own, "a.yaml", &registry, &defaults).unwrap();
    assert_eq!(spec.parallelism, 2);
    assert_eq!(spec.checkpoint_interval, Duration::from_secs(1));
    assert_eq!(spec.restart_strategy, RestartStrategy::None);

    let none = keel_conf::from_str("restart-strategy.type: none\n", "c.yaml", &[]).unwrap().config;
    let spec = parse_job_spec_with_defaults(
        &format!("name: a\n{PIPELINE}"),
        "a.yaml",
        &registry,
        &JobDefaults::from_config(&none),
    )
    .unwrap();
    assert_eq!(spec.restart_strategy, RestartStrategy::None);
    // Without configuration: the built-in defaults, as before.
    assert_eq!(JobDefaults::from_config(&keel_conf::Config::defaults()), JobDefaults::default());
}

#[test]
fn pinned_defaults_make_the_stored_spec_self_contained() {
    let config =
        keel_conf::from_str("parallelism.default: 3\nrestart-strategy.type: none\n", "c.yaml", &[]).unwrap().config;
    let defaults = JobDefaults::from_config(&config);
    let text = format!("# a comment\nname: a\n{PIPELINE}");
    let pinned = keel_job::pin_job_defaults(&text, &defaults).unwrap();
    assert_eq!(
        pinned,
        format!(
            "# a comment\nparallelism: 3\ncheckpoint-interval: 10000 ms\nrestart-strategy: none\nname: a\n{PIPELINE}"
        )
    );
    // Parsed with the built-in defaults (as a worker does), it is the same job.
    let registry = OperatorRegistry::new();
    let as_worker = parse_job_spec_with_defaults(&pinned, "a", &registry, &JobDefaults::default()).unwrap();
    let as_leader = parse_job_spec_with_defaults(&text, "a", &registry, &defaults).unwrap();
    assert_eq!(as_worker.parallelism, 3);
    assert_eq!(as_worker.restart_strategy, as_leader.restart_strategy);
    assert_eq!(as_worker.checkpoint_interval, as_leader.checkpoint_interval);
    // Nothing missing, or a flow-style top level: unchanged.
    let full = format!("name: a\nparallelism: 1\ncheckpoint-interval: 1 s\nrestart-strategy: none\n{PIPELINE}");
    assert_eq!(keel_job::pin_job_defaults(&full, &defaults), None);
    assert_eq!(keel_job::pin_job_defaults("{name: a, pipeline: []}", &defaults), None);
}

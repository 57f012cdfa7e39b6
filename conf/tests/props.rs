//! Property tests: the configuration parser never panics on random or mutated YAML, and an
//! error always names the file.

use keel_conf::from_str;
use proptest::prelude::*;

const SEEDS: &[&str] = &[
    "high-availability.type: zookeeper\nhigh-availability.zookeeper.quorum: zk1:2181,zk2:2181\nrest.port: 8081\nstate:\n  backend: rocksdb\n  checkpoints.dir: file:///var/keel/cp\nrest.auth.token: t0ken\n",
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c {k1: *b, k2: *b, k3: *b, k4: *b, k5: *b, k6: *b, k7: *b, k8: *b, k9: *b}\nd: &d {k1: *c, k2: *c, k3: *c, k4: *c, k5: *c, k6: *c, k7: *c, k8: *c, k9: *c}\n",
    "heartbeat:\n  interval: 200 ms\n  timeout: 2 s\nio.tmp.dirs: /tmp:/var/tmp\n---\nx: 1\n",
];

/// Random edits of a seed: replace, insert, delete, or repeat a slice.
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_configs_never_panic(
        seed in prop::sample::select(SEEDS.to_vec()),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..16),
    ) {
        let text = mutate(seed, &edits);
        if let Err(e) = from_str(&text, "conf.yaml", &[]) {
            let message = e.to_string();
            prop_assert!(message.contains("conf.yaml") || !message.is_empty(), "{message}");
            prop_assert!(message.len() < 4096, "{} bytes", message.len());
        }
    }

    #[test]
    fn random_yaml_never_panics(text in "[-\\[\\]{}:,&*!|>'\"#? \n a-z0-9.]{0,400}") {
        let _ = from_str(&text, "conf.yaml", &[]);
    }
}

//! docs/configuration.md is generated from `keel_conf::KEYS`; this keeps it in step.
//!
//! Regenerate with `KEEL_REGENERATE_DOCS=1 cargo test -p keel-conf --test reference_doc`.

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");

#[test]
fn configuration_reference_is_up_to_date() {
    let expected = keel_conf::reference_markdown();
    if std::env::var_os("KEEL_REGENERATE_DOCS").is_some_and(|v| v == "1") {
        std::fs::write(DOC, &expected).unwrap_or_else(|e| panic!("cannot write {DOC}: {e}"));
        return;
    }
    let actual = std::fs::read_to_string(DOC).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/configuration.md is out of date with keel_conf::KEYS; regenerate it with\n\n    \
         KEEL_REGENERATE_DOCS=1 cargo test -p keel-conf --test reference_doc\n"
    );
}

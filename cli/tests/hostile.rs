//! Hostile requests against a live cluster (real ZooKeeper, real `keel` dispatchers): each gets
//! a 4xx with `{"errors": [...]}` JSON and a bounded body, the leader stays the same process
//! and the leader at the same epoch, and its memory grows by less than 100 MB. Also: with
//! `rest.admin.enabled` off (the default), `POST /admin/fault` is refused and `keel drill`
//! says which key to set.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Cluster;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
/// The largest error body accepted from the server.
const MAX_ERROR_BODY: usize = 4096;

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// One raw HTTP/1.1 request with `Connection: close`. The body is written from a separate
/// thread so that a server answering before reading all of it (413) cannot block us.
fn request(addr: &str, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    // Only a guard against hanging forever; no test asserts on how long anything takes.
    stream.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // The server may close early (413): write errors are expected then.
        let _ = writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(&body));
    });
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let _ = sender.join();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("{method} {path}: no HTTP answer: {:?}", String::from_utf8_lossy(&raw[..raw.len().min(300)]))
    });
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
            .unwrap_or("")
            .to_string()
    };
    if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        body = dechunk(&body);
    }
    Answer { status, content_type: header("content-type"), body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the leader process is alive");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn spec(steps: &str) -> String {
    format!("name: hostile\npipeline:\n  - source: {{ type: sequence, count: 10 }}\n{steps}")
}

fn sink(path: &str) -> String {
    spec(&format!("  - sink: {{ type: file, path: \"{path}\" }}\n"))
}

fn alias_bomb() -> String {
    let mut text =
        "name: bomb\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n".to_string();
    let mut prev = 'a';
    for c in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
        text.push_str(&format!("{c}: &{c} [{}]\n", vec![format!("*{prev}"); 9].join(",")));
        prev = c;
    }
    text
}

/// (what, method, path, content type, body, expected status, text the error must contain)
type Case = (&'static str, &'static str, String, &'static str, Vec<u8>, u16, String);

fn corpus() -> Vec<Case> {
    let yaml = "application/yaml";
    let json = "application/json";
    let deep = format!("{}value{}", "(".repeat(2000), ")".repeat(2000));
    let mut cases: Vec<Case> = vec![
        (
            "expression nested 2,000 deep",
            "POST",
            "/jobs".into(),
            yaml,
            spec(&format!("  - map: {{ expr: \"{deep}\" }}\n  - sink: {{ type: discard }}\n")).into_bytes(),
            400,
            "pipeline[1].map.expr".into(),
        ),
        (
            "expression nested 65 deep",
            "POST",
            "/jobs".into(),
            yaml,
            spec(&format!(
                "  - filter: {{ expr: \"{}value{} > 0\" }}\n  - sink: {{ type: discard }}\n",
                "(".repeat(65),
                ")".repeat(65)
            ))
            .into_bytes(),
            400,
            "the limit is 64".into(),
        ),
        (
            "alias bomb",
            "POST",
            "/jobs".into(),
            yaml,
            alias_bomb().into_bytes(),
            400,
            "the limit is 100000 nodes".into(),
        ),
        (
            "YAML nested 100,000 deep",
            "POST",
            "/jobs".into(),
            yaml,
            format!("name: x\np: {}1{}\n", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            400,
            "invalid YAML".into(),
        ),
        (
            "a 900 KB single-line value",
            "POST",
            "/jobs".into(),
            yaml,
            format!("name: x\nparallelism: {}\n", "9x".repeat(450_000)).into_bytes(),
            400,
            "…(900000 bytes)".into(),
        ),
        (
            "a 2 MB body",
            "POST",
            "/jobs".into(),
            yaml,
            format!("name: x\n# {}\n", "y".repeat(2 << 20)).into_bytes(),
            413,
            "the limit is 1048576 bytes".into(),
        ),
        (
            "literal division by zero",
            "POST",
            "/jobs".into(),
            yaml,
            spec("  - map: { expr: \"value / 0\" }\n  - sink: { type: discard }\n").into_bytes(),
            400,
            "pipeline[1].map.expr: invalid expression \"value / 0\": column 7: division by zero".into(),
        ),
        (
            "relative sink path",
            "POST",
            "/jobs".into(),
            yaml,
            sink("out/dir").into_bytes(),
            400,
            "pipeline[1].sink.path: 'out/dir' is neither a URI nor an absolute path".into(),
        ),
        (
            "sink path with ..",
            "POST",
            "/jobs".into(),
            yaml,
            sink("/tmp/../etc/keel").into_bytes(),
            400,
            "path segment \"..\" is not allowed".into(),
        ),
        (
            "source path with ..",
            "POST",
            "/jobs".into(),
            yaml,
            "name: x\npipeline:\n  - source: { type: file, path: /data/../etc/passwd }\n  - sink: { type: discard }\n"
                .as_bytes()
                .to_vec(),
            400,
            "pipeline[0].source.path".into(),
        ),
        (
            "unknown sink scheme",
            "POST",
            "/jobs".into(),
            yaml,
            sink("gs://bucket/out").into_bytes(),
            400,
            "unknown scheme \"gs\"".into(),
        ),
        ("malformed YAML", "POST", "/jobs".into(), yaml, b"name: [unclosed\n".to_vec(), 400, "invalid YAML".into()),
        ("not UTF-8", "POST", "/jobs".into(), yaml, vec![b'n', 0xff, 0xfe, b'\n'], 400, "UTF-8".into()),
        ("empty body", "POST", "/jobs".into(), yaml, Vec::new(), 400, "empty request body".into()),
        (
            "fromSavepoint under /proc",
            "POST",
            "/jobs?fromSavepoint=file:///proc/self/root".into(),
            yaml,
            sink("/tmp/keel-hostile-out").into_bytes(),
            400,
            "fromSavepoint".into(),
        ),
        (
            "malformed JSON",
            "POST",
            "/jobs/0123/savepoints".into(),
            json,
            b"{\"target-directory\": ".to_vec(),
            400,
            "invalid savepoint request body".into(),
        ),
        (
            "admin fault while disabled",
            "POST",
            "/admin/fault".into(),
            json,
            br#"{"fault": "kill"}"#.to_vec(),
            403,
            "rest.admin.enabled: true".into(),
        ),
        ("wrong method", "DELETE", "/jobs".into(), json, Vec::new(), 405, "not allowed".into()),
        ("unknown mode", "PATCH", "/jobs/0123?mode=destroy".into(), json, Vec::new(), 400, "mode=cancel".into()),
        ("unknown endpoint", "GET", format!("/{}", "x".repeat(5000)), json, Vec::new(), 404, "no such endpoint".into()),
    ];
    for dir in ["relative/dir", "/abs/without/scheme", "file:///tmp/../etc", "file:///proc/self/cwd", "gs://b/x", ""] {
        cases.push((
            "bad savepoint directory",
            "POST",
            "/jobs/0123/savepoints".into(),
            json,
            serde_json::json!({ "target-directory": dir }).to_string().into_bytes(),
            400,
            "target-directory".into(),
        ));
    }
    cases
}

#[test]
fn hostile_requests_get_clear_4xx_and_the_leader_stays_up() {
    // The harness turns the admin endpoint on for drills; this cluster keeps the default (off).
    let c = Cluster::start("hostile", 2, 0, &[("rest.admin.enabled", "false")]);
    let leader = c.wait_leader(&[0, 1], T);
    let addr = c.dispatchers[leader.index].rest_addr().expect("leader REST address");
    let pid = c.dispatchers[leader.index].pid();
    let rss_before = vm_rss_kb(pid);
    eprintln!("leader {} (pid {pid}) at epoch {}, VmRSS {rss_before} kB", leader.id, leader.epoch);

    let mut rss_peak = rss_before;
    for round in 0..3 {
        for (what, method, path, content_type, body, want, needle) in corpus() {
            let a = request(&addr, method, &path, content_type, body);
            let text = String::from_utf8_lossy(&a.body).to_string();
            assert_eq!(a.status, want, "{what} (round {round}): {text}");
            assert!(a.content_type.starts_with("application/json"), "{what}: content type {:?}", a.content_type);
            assert!(a.body.len() <= MAX_ERROR_BODY, "{what}: {} bytes of error body", a.body.len());
            let v: Value = serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
            let errors = v["errors"].as_array().unwrap_or_else(|| panic!("{what}: no errors array: {text}"));
            assert!(!errors.is_empty() && errors.iter().all(Value::is_string), "{what}: {text}");
            let messages: Vec<&str> = errors.iter().filter_map(Value::as_str).collect();
            assert!(messages.iter().any(|m| m.contains(&needle)), "{what}: expected {needle:?} in {messages:?}");
            if round == 0 {
                eprintln!("{what}: {} {}", a.status, errors[0].as_str().unwrap_or_default());
            }
            rss_peak = rss_peak.max(vm_rss_kb(pid));
        }
    }

    // Same process, still the acting leader at the same epoch, and everyone agrees.
    let after = c.wait_leader(&[0, 1], T);
    assert_eq!(after, leader, "the leader changed");
    assert_eq!(c.dispatchers[leader.index].pid(), pid);
    let rss_after = vm_rss_kb(pid);
    rss_peak = rss_peak.max(rss_after);
    eprintln!("VmRSS before {rss_before} kB, peak {rss_peak} kB, after {rss_after} kB");
    assert!(rss_peak < rss_before + 100 * 1024, "VmRSS grew from {rss_before} kB to {rss_peak} kB");

    // `keel drill` against a dispatcher whose admin endpoint is off says what to set.
    let out = c.keel(&["drill", "kill-leader", "--yes", "--timeout", "10 s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the drill ran: {stderr}");
    assert!(stderr.contains("set rest.admin.enabled: true"), "{stderr}");
    assert_eq!(c.wait_leader(&[0, 1], T), leader, "the drill changed the leader");
}

/// `rest.auth.read: true` protects GET endpoints with the token; with the admin endpoint on,
/// `POST /admin/fault` still needs the token.
#[test]
fn read_auth_and_admin_token() {
    let c = Cluster::start(
        "hostile-auth",
        1,
        0,
        &[("rest.auth.token", "s3cret"), ("rest.auth.read", "true"), ("rest.admin.enabled", "true")],
    );
    let addr = c.dispatchers[0].rest_addr().expect("REST address");
    let get = |path: &str, token: Option<&str>| {
        let mut stream = TcpStream::connect(&addr).unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n").unwrap();
        let mut raw = String::new();
        let _ = stream.read_to_string(&mut raw);
        raw.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).expect("status")
    };
    for path in ["/overview", "/jobs/overview", "/ha/leader", "/taskmanagers"] {
        assert_eq!(get(path, None), 401, "{path} without the token");
        assert_eq!(get(path, Some("wrong")), 401, "{path} with a wrong token");
        assert_ne!(get(path, Some("s3cret")), 401, "{path} with the token");
    }
    let a = request(&addr, "GET", "/overview", "application/json", Vec::new());
    let v: Value = serde_json::from_slice(&a.body).expect("JSON 401");
    assert!(v["errors"][0].as_str().unwrap_or_default().contains("Authorization: Bearer"), "{v}");
    let a =
        request(&addr, "POST", "/admin/fault", "application/json", br#"{"fault": "pause", "pause_ms": 1}"#.to_vec());
    assert_eq!(a.status, 401, "{}", String::from_utf8_lossy(&a.body));
    assert!(c.dispatchers[0].rest_addr().is_some());
}

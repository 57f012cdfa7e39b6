//! Put+get throughput of the two backends on one calling thread (RocksDB WAL off).
//!
//! ```text
//! cargo run --release -p keel-state --example throughput [-- OPS]
//! ```
//! OPS (default 200000) is split evenly between puts and gets; keys are 16 bytes in a
//! scrambled order, values 100 bytes. Prints a table, then one JSON line.

use std::time::{Duration, Instant};

use keel_state::{open_backend, BackendKind};

fn key(i: u64) -> [u8; 16] {
    // A bijective scramble of i, so keys arrive in no particular order.
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ 0xD6E8_FEB8_6659_FD93;
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&x.to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

struct Run {
    kind: BackendKind,
    puts: Duration,
    gets: Duration,
    snapshot: Duration,
    snapshot_bytes: u64,
}

fn run(kind: BackendKind, n: u64) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut b = open_backend(kind, dir.path(), "bench").expect("open");
    let value = [7u8; 100];
    let t = Instant::now();
    for i in 0..n {
        b.put(&key(i), &value).expect("put");
    }
    let puts = t.elapsed();
    let t = Instant::now();
    let mut found = 0u64;
    for i in 0..n {
        found += b.get(&key((i * 7919) % n)).expect("get").is_some() as u64;
    }
    let gets = t.elapsed();
    assert_eq!(found, n);
    let t = Instant::now();
    let snap = b.snapshot(1).expect("snapshot");
    let snapshot = t.elapsed();
    Run { kind, puts, gets, snapshot, snapshot_bytes: snap.files.iter().map(|f| f.size).sum() }
}

fn main() {
    let ops: u64 = std::env::args().nth(1).map(|s| s.parse().expect("OPS must be a number")).unwrap_or(200_000);
    let n = ops / 2;
    let runs: Vec<Run> = BackendKind::ALL.into_iter().map(|k| run(k, n)).collect();
    let rate = |count: u64, d: Duration| count as f64 / d.as_secs_f64();

    println!("{ops} ops ({n} puts + {n} gets), 16-byte keys, 100-byte values, one thread, WAL off");
    println!(
        "{:<8} {:>12} {:>12} {:>14} {:>13} {:>14}",
        "backend", "puts/s", "gets/s", "put+get ops/s", "snapshot ms", "snapshot MiB"
    );
    for r in &runs {
        println!(
            "{:<8} {:>12.0} {:>12.0} {:>14.0} {:>13.1} {:>14.2}",
            r.kind.as_str(),
            rate(n, r.puts),
            rate(n, r.gets),
            rate(2 * n, r.puts + r.gets),
            r.snapshot.as_secs_f64() * 1e3,
            r.snapshot_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    let json: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "backend": r.kind.as_str(),
                "ops": 2 * n,
                "puts_per_s": rate(n, r.puts).round(),
                "gets_per_s": rate(n, r.gets).round(),
                "ops_per_s": rate(2 * n, r.puts + r.gets).round(),
                "snapshot_ms": (r.snapshot.as_secs_f64() * 1e4).round() / 10.0,
                "snapshot_bytes": r.snapshot_bytes,
            })
        })
        .collect();
    println!("{}", serde_json::json!({ "benchmark": "keel-state throughput", "wal": false, "results": json }));
}

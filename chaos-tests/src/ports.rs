//! Free TCP port picking on 127.0.0.1.
//!
//! A port is found by binding `127.0.0.1:0` and dropping the listener, so another program on
//! the machine may still take it before the test binds it; [`ZkEnsemble::start`] retries with
//! new ports when a member reports "Address already in use". Within one test binary a port is
//! never handed out twice.
//!
//! [`ZkEnsemble::start`]: crate::ZkEnsemble::start

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed
/// out before.
///
/// # Panics
///
/// If binding `127.0.0.1:0` fails 1,000 times in a row (no loopback, or the port range is
/// exhausted): a test cannot go on without ports.
pub fn free_port() -> u16 {
    let mut seen = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()).map(|a| a.port());
        if let Ok(port) = port {
            if seen.insert(port) {
                return port;
            }
        }
    }
    panic!("chaos-tests: could not find a free port on 127.0.0.1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), ports.len());
        assert!(ports.iter().all(|p| *p != 0));
        TcpListener::bind(("127.0.0.1", ports[0])).expect("a free port binds");
    }
}

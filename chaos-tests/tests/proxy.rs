//! `FaultProxy` and `ProxyMesh` against a real echo server and a real ZooKeeper.
//!
//! Timing is printed, not asserted tightly: the only time asserts are "at least the injected
//! delay" and generous upper bounds on bounded waits.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chaos_tests::{wait_until, FaultProxy, ProxyMesh, ZkEnsemble};

/// An echo server on 127.0.0.1:0, one thread per connection; every loop bounded by a
/// stop flag and 20 ms timeouts. Drop stops and joins everything.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let stop3 = stop2.clone();
                        conns.push(thread::spawn(move || {
                            // The proxy may have reset this connection already (a cut).
                            if s.set_nonblocking(false).is_err()
                                || s.set_read_timeout(Some(Duration::from_millis(20))).is_err()
                            {
                                return;
                            }
                            let mut buf = [0u8; 8192];
                            while !stop3.load(Ordering::SeqCst) {
                                match s.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) => {
                                        if s.write_all(&buf[..n]).is_err() {
                                            break;
                                        }
                                    }
                                    Err(e)
                                        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                                    Err(_) => break,
                                }
                            }
                        }));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Echo { addr, stop, thread: Some(thread) }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Writes `msg` and reads back exactly as many bytes.
fn echo_roundtrip(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

/// True if reading shows the connection is gone (EOF or reset) within 5 s.
fn is_closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
    }
}

/// True if a read gets nothing within `wait` while the connection stays open.
fn read_times_out(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 16];
    matches!(s.read(&mut b), Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for t in rd.flatten() {
            if let Ok(comm) = std::fs::read_to_string(t.path().join("comm")) {
                if comm.trim().starts_with(prefix) {
                    out.push(comm.trim().to_string());
                }
            }
        }
    }
    out
}

#[test]
fn echo_traffic_cut_heal_blackhole() {
    let echo = Echo::start();
    let proxy = FaultProxy::start(echo.addr).unwrap();
    assert_eq!(proxy.upstream(), echo.addr);
    assert_eq!(proxy.addr().ip().to_string(), "127.0.0.1");

    // Traffic passes.
    let mut a = connect(proxy.addr());
    assert_eq!(echo_roundtrip(&mut a, b"hello").unwrap(), b"hello");
    // The proxy counts a chunk after its write returned, which may be after the client read it.
    let st = wait_until(Duration::from_secs(5), Duration::from_millis(5), "byte counters", || {
        Some(proxy.stats()).filter(|s| s.bytes_to_client == 5)
    })
    .unwrap();
    assert_eq!((st.accepted, st.open, st.bytes_to_upstream, st.bytes_to_client), (1, 1, 5, 5), "{st:?}");
    assert!(!st.faults.any());

    // Cut: the open connection is reset, new ones are refused.
    proxy.cut();
    assert!(proxy.faults().cut);
    assert!(is_closed(&mut a), "cut must close the open connection");
    // The connect itself may succeed (the kernel completes the handshake before the proxy
    // accepts and resets), but nothing gets through.
    let r = TcpStream::connect_timeout(&proxy.addr(), Duration::from_secs(2)).and_then(|mut b| {
        b.set_read_timeout(Some(Duration::from_secs(5)))?;
        echo_roundtrip(&mut b, b"x")
    });
    assert!(r.is_err(), "a connection during a cut must fail: {r:?}");
    assert!(proxy.stats().refused >= 1);

    // Heal: works again.
    proxy.heal();
    let mut c = connect(proxy.addr());
    assert_eq!(echo_roundtrip(&mut c, b"again").unwrap(), b"again");

    // Blackhole: connections stay open, bytes vanish both ways.
    let mut idle = connect(proxy.addr());
    assert_eq!(echo_roundtrip(&mut idle, b"i").unwrap(), b"i");
    proxy.blackhole();
    c.write_all(b"lost").unwrap();
    assert!(read_times_out(&mut c, Duration::from_millis(400)), "blackholed bytes must not come back");
    let mut d = connect(proxy.addr()); // accepted, never answered
    d.write_all(b"hello?").unwrap();
    assert!(read_times_out(&mut d, Duration::from_millis(300)));
    let st = proxy.stats();
    assert!(st.dropped_to_upstream >= 4 + 6, "{st:?}");
    assert!(st.faults.blackhole);

    // Heal after a blackhole: connections that lost bytes are reset (a TCP stream never has
    // holes); the idle one carries on.
    proxy.heal();
    assert!(is_closed(&mut c), "a connection that lost bytes is reset on heal");
    assert!(is_closed(&mut d), "a connection that lost bytes is reset on heal");
    assert_eq!(echo_roundtrip(&mut idle, b"still here").unwrap(), b"still here");
    let mut e = connect(proxy.addr());
    assert_eq!(echo_roundtrip(&mut e, b"fresh").unwrap(), b"fresh");

    // drop_connections: a brief disconnect, new connections fine.
    assert!(proxy.drop_connections() >= 2);
    assert!(is_closed(&mut e));
    let mut f = connect(proxy.addr());
    assert_eq!(echo_roundtrip(&mut f, b"ok").unwrap(), b"ok");
    eprintln!("stats after cut/heal/blackhole: {:?}", proxy.stats());
}

#[test]
fn latency_and_bandwidth_are_measurable() {
    let echo = Echo::start();
    let proxy = FaultProxy::start(echo.addr).unwrap();
    let mut s = connect(proxy.addr());
    let t = Instant::now();
    echo_roundtrip(&mut s, b"warm").unwrap();
    let base = t.elapsed();

    // Latency applies to the connection already open.
    let delay = Duration::from_millis(100);
    proxy.latency(delay);
    assert_eq!(proxy.faults().latency, delay);
    let t = Instant::now();
    echo_roundtrip(&mut s, b"ping").unwrap();
    let rtt = t.elapsed();
    eprintln!("round trip: {base:?} without latency, {rtt:?} with {delay:?} each way");
    // A lower bound on an injected delay is a mechanism check: a delay never makes anything
    // faster. The request and the reply each wait `delay` in the proxy.
    assert!(rtt >= delay * 2, "round trip {rtt:?} shorter than the injected {delay:?} each way");

    // A delay line, not a queue of sleeps: 10 pipelined chunks take about one delay, not ten.
    let t = Instant::now();
    for i in 0..10u8 {
        s.write_all(&[i; 100]).unwrap();
    }
    let mut got = vec![0u8; 1000];
    s.read_exact(&mut got).unwrap();
    let pipelined = t.elapsed();
    eprintln!("10 pipelined chunks with {delay:?} latency: {pipelined:?}");
    assert!(pipelined >= delay * 2, "pipelined chunks {pipelined:?} beat the injected {delay:?} each way");
    assert!(
        got.chunks(100).enumerate().all(|(i, c)| c.iter().all(|b| *b == i as u8)),
        "delayed bytes arrive intact and in order"
    );
    proxy.heal();

    // Bandwidth: 40 KB/s each way; 20 KB echoed takes about 0.5 s.
    proxy.bandwidth(40_000);
    let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let t = Instant::now();
    let writer = {
        let mut w = s.try_clone().unwrap();
        let p = payload.clone();
        thread::spawn(move || w.write_all(&p))
    };
    let mut back = vec![0u8; payload.len()];
    s.read_exact(&mut back).unwrap();
    writer.join().unwrap().unwrap();
    let took = t.elapsed();
    eprintln!("20 KB echoed at 40 KB/s per direction: {took:?}");
    assert_eq!(back, payload);
    assert_eq!(proxy.faults().bandwidth, Some(40_000));
    // 20,000 bytes cannot cross a 40,000 B/s link in less than 0.5 s (10% slack for the
    // float arithmetic of the release times; without the throttle this takes milliseconds).
    assert!(took >= Duration::from_millis(450), "throttle had no effect: 20 KB echoed in {took:?}");
    proxy.heal();
    let t = Instant::now();
    echo_roundtrip(&mut s, &payload).unwrap();
    eprintln!("20 KB echoed after heal: {:?}", t.elapsed());
}

#[test]
fn drop_joins_every_thread_and_resets_connections() {
    let echo = Echo::start();
    let proxy = FaultProxy::start(echo.addr).unwrap();
    let prefix = format!("px{}", proxy.addr().port());
    let mut conns: Vec<TcpStream> = (0..5).map(|_| connect(proxy.addr())).collect();
    for c in &mut conns {
        assert_eq!(echo_roundtrip(c, b"x").unwrap(), b"x");
    }
    // One connection half-closed by the client, one with latency queued data.
    conns[0].shutdown(Shutdown::Write).unwrap();
    proxy.latency(Duration::from_secs(30));
    conns[1].write_all(b"queued").unwrap();
    let threads = threads_named(&prefix);
    eprintln!("threads while running: {threads:?}");
    assert!(threads.len() > 5, "accept thread + at least one per connection: {threads:?}");
    let t = Instant::now();
    drop(proxy);
    let took = t.elapsed();
    eprintln!("drop took {took:?}");
    // A joined thread's /proc entry can outlive pthread_join by a moment.
    wait_until(Duration::from_secs(2), Duration::from_millis(10), "proxy threads to disappear", || {
        threads_named(&prefix).is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: leaked {:?}", threads_named(&prefix)));
    for c in &mut conns[1..] {
        assert!(is_closed(c));
    }
}

/// A four-letter word through `addr`: the reply, or the error (an empty reply means the
/// connection was closed without an answer).
fn flw(addr: SocketAddr, word: &str, timeout: Duration) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(word.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn zookeeper_through_the_proxy() {
    let zk = ZkEnsemble::start(1).expect("start 1-node ZooKeeper");
    let member = SocketAddr::from(([127, 0, 0, 1], zk.client_port(0)));
    let mesh = ProxyMesh::for_zk(&zk).unwrap();
    assert_eq!(mesh.len(), 1);
    let p = mesh.proxy(0);
    assert_eq!(p.upstream(), member);
    assert_eq!(mesh.connect_string(), format!("127.0.0.1:{}", p.addr().port()));
    let short = Duration::from_millis(700);

    // Traffic passes.
    assert_eq!(flw(p.addr(), "ruok", Duration::from_secs(2)).unwrap(), "imok");
    let srvr = flw(p.addr(), "srvr", Duration::from_secs(2)).unwrap();
    assert!(srvr.contains("Mode: standalone"), "{srvr}");

    // Cut: no answer.
    mesh.cut();
    let r = flw(p.addr(), "ruok", short);
    assert!(r.as_ref().map_or(true, String::is_empty), "cut proxy answered: {r:?}");
    // The member itself is fine.
    assert_eq!(zk.four_letter_word(0, "ruok", Duration::from_secs(2)).unwrap(), "imok");

    // Heal: answers again.
    mesh.heal();
    assert_eq!(flw(p.addr(), "ruok", Duration::from_secs(2)).unwrap(), "imok");

    // Blackhole: the read times out (no RST, no EOF).
    mesh.blackhole();
    let t = Instant::now();
    let r = flw(p.addr(), "ruok", short);
    eprintln!("blackholed ruok: {r:?} after {:?}", t.elapsed());
    match r {
        Err(e) => assert!(matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut), "{e}"),
        Ok(s) => panic!("blackholed proxy answered {s:?}"),
    }
    mesh.heal();
    let reply = wait_until(Duration::from_secs(5), Duration::from_millis(50), "ruok after heal", || {
        flw(p.addr(), "ruok", Duration::from_secs(1)).ok().filter(|s| s == "imok")
    })
    .unwrap();
    assert_eq!(reply, "imok");

    // Latency: measurable on a real request.
    let t = Instant::now();
    flw(p.addr(), "srvr", Duration::from_secs(2)).unwrap();
    let base = t.elapsed();
    mesh.latency(Duration::from_millis(150));
    let t = Instant::now();
    let srvr = flw(p.addr(), "srvr", Duration::from_secs(5)).unwrap();
    let slow = t.elapsed();
    eprintln!("srvr through the proxy: {base:?} plain, {slow:?} with 150ms latency");
    assert!(srvr.contains("Mode: standalone"));
    assert!(slow >= Duration::from_millis(300), "srvr took {slow:?}, less than 150 ms each way");
    mesh.heal();
    let stats = mesh.stats();
    eprintln!("mesh stats: {stats:?}");
    assert!(stats[0].accepted >= 6 && stats[0].bytes_to_client > 0, "{stats:?}");
}

/// An upstream that records, in arrival order, every chunk any connection sends it (with the
/// instant it arrived). Loops bounded by a stop flag and 20 ms timeouts; drop joins them.
struct Collector {
    addr: SocketAddr,
    got: Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<std::sync::Mutex<Vec<(Instant, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (got2, stop2) = (got.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let (got3, stop3) = (got2.clone(), stop2.clone());
                        conns.push(thread::spawn(move || {
                            if s.set_nonblocking(false).is_err()
                                || s.set_read_timeout(Some(Duration::from_millis(20))).is_err()
                            {
                                return;
                            }
                            let mut buf = [0u8; 8192];
                            while !stop3.load(Ordering::SeqCst) {
                                match s.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) => got3
                                        .lock()
                                        .unwrap()
                                        .push((Instant::now(), String::from_utf8_lossy(&buf[..n]).to_string())),
                                    Err(e)
                                        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                                    Err(_) => break,
                                }
                            }
                        }));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Collector { addr, got, stop, thread: Some(thread) }
    }

    /// The position of the first chunk containing `text`, and when it arrived.
    fn find(&self, text: &str) -> Option<(usize, Instant)> {
        self.got.lock().unwrap().iter().enumerate().find(|(_, (_, t))| t.contains(text)).map(|(i, (at, _))| (i, *at))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reordering `command-latency` relies on: bytes of an orphaned connection still reach
/// the upstream after their delay, after what a new connection sent later; the client of the
/// orphaned connection reads EOF at once. And a held connection delivers nothing until
/// released, while a new connection flows.
#[test]
fn an_orphaned_connection_delivers_late_and_is_overtaken_by_a_new_one() {
    let up = Collector::start();
    let proxy = FaultProxy::start(up.addr).unwrap();
    let mut a = connect(proxy.addr());
    a.write_all(b"a-first").unwrap();
    wait_until(Duration::from_secs(10), Duration::from_millis(10), "a-first upstream", || up.find("a-first")).unwrap();

    // A's bytes from now on take 1.5 s; then A is orphaned and B (undelayed) sends later.
    let delays = proxy.latency_per_connection(Duration::from_millis(1500), Duration::from_millis(1500), 7);
    assert_eq!(delays, vec![Duration::from_millis(1500)]);
    let sent_old = Instant::now();
    a.write_all(b"old-command").unwrap();
    thread::sleep(Duration::from_millis(100));
    assert_eq!(proxy.orphan_connections(), 1);
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(a.read(&mut buf).unwrap_or(0), 0, "the orphaned client reads EOF");
    proxy.heal();
    let mut b = connect(proxy.addr());
    b.write_all(b"new-command").unwrap();
    let (new_pos, _) = wait_until(Duration::from_secs(10), Duration::from_millis(10), "new-command upstream", || {
        up.find("new-command")
    })
    .unwrap();
    let (old_pos, old_at) =
        wait_until(Duration::from_secs(10), Duration::from_millis(10), "old-command upstream", || {
            up.find("old-command")
        })
        .unwrap();
    assert!(new_pos < old_pos, "the newer command overtook the older one: {:?}", up.got.lock().unwrap());
    assert!(old_at - sent_old >= Duration::from_millis(1400), "the old command was delayed: {:?}", old_at - sent_old);
    assert!(proxy.late_bytes_delivered() >= "old-command".len() as u64);

    // Hold: nothing of B's goes upstream until released; a new connection C flows meanwhile.
    // B, and A while it lingers upstream after its late bytes.
    assert!(proxy.hold_open_connections() >= 1);
    b.write_all(b"held-command").unwrap();
    let mut c = connect(proxy.addr());
    c.write_all(b"free-command").unwrap();
    wait_until(Duration::from_secs(10), Duration::from_millis(10), "free-command upstream", || up.find("free-command"))
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    assert!(up.find("held-command").is_none(), "a held connection delivers nothing");
    assert!(proxy.queued_to_upstream() >= "held-command".len() as u64);
    proxy.release_held();
    let (held_pos, _) = wait_until(Duration::from_secs(10), Duration::from_millis(10), "held-command upstream", || {
        up.find("held-command")
    })
    .unwrap();
    let (free_pos, _) = up.find("free-command").unwrap();
    assert!(free_pos < held_pos);
}

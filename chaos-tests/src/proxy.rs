//! A TCP fault proxy the harness controls: cut, blackhole, latency and bandwidth on one link.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:<free port>` and forwards every accepted
//! connection to one upstream address (a ZooKeeper member's client port, a dispatcher's RPC
//! port, the S3 server). Point the process under test at [`FaultProxy::addr`] instead of the
//! upstream, then inject faults from the test thread. Every control takes `&self`, is
//! thread-safe, and applies to connections already open as well as to new ones:
//!
//! | control | effect until [`heal`](FaultProxy::heal) |
//! | --- | --- |
//! | [`cut`](FaultProxy::cut) | every open connection is reset (RST); new ones are accepted and reset at once |
//! | [`blackhole`](FaultProxy::blackhole) | connections stay open but bytes vanish both ways; new ones are accepted and never answered |
//! | [`latency`](FaultProxy::latency) | each chunk is delivered that much later (a delay line: throughput is not capped) |
//! | [`bandwidth`](FaultProxy::bandwidth) | each direction of each connection carries at most that many bytes per second |
//! | [`latency_per_connection`](FaultProxy::latency_per_connection) | like `latency`, but each connection (open or new) draws its own delay from a range |
//!
//! [`heal`](FaultProxy::heal) clears them all. A connection that lost bytes to a blackhole
//! is reset when the blackhole ends: a real TCP connection never delivers a stream with a
//! hole in it (after a long partition it times out instead), so neither does the proxy.
//! Connections that stayed idle through the blackhole live on.
//! [`drop_connections`](FaultProxy::drop_connections) resets the open connections once
//! without refusing new ones (a brief disconnect).
//!
//! **Reordering.** Bytes on one connection are always delivered in order (TCP). Messages on
//! *different* connections are reordered when the connections have different delays:
//! [`orphan_connections`](FaultProxy::orphan_connections) closes the client side of every
//! open connection (the client sees EOF and reconnects) while the bytes already in the
//! proxy still reach the upstream after their delay, so a request the client gave up on
//! arrives after the requests it sent later on a new connection (a delayed command
//! overtaken by a newer one).
//!
//! [`ProxyMesh`] puts one proxy in front of each of several upstreams (the members of a
//! ZooKeeper ensemble) and gives the connect string through them, so one Keel process can be
//! partitioned from ZooKeeper while the others are not.
//!
//! # Threads and shutdown
//!
//! One accept thread per proxy, and per connection one thread per direction. Every loop
//! wakes at least every 20 ms to look at the shutdown and fault flags (socket timeouts, never
//! an unbounded block), the upstream connect is bounded by 1 s, and at most 1 MiB per
//! direction is queued in the proxy (beyond it the proxy stops reading, so TCP flow control
//! pushes back on the sender). Dropping the proxy stops the listener, resets every connection
//! and joins every thread it started, typically within a few tens of milliseconds. Its
//! threads are named `px<listen port>` + `a` (accept), `c<n>` / `d<n>` (connection `n`, each
//! direction), so a test can look for leftovers in `/proc/self/task/*/comm`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest any proxy thread blocks before it looks at its flags again.
const POLL: Duration = Duration::from_millis(20);
/// Bound on connecting to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes a direction may hold in its delay line before the proxy stops reading.
const MAX_QUEUED: usize = 1 << 20;
/// How long an orphaned connection stays open upstream after its last late byte.
const ORPHAN_LINGER: Duration = Duration::from_secs(3);
/// Largest chunk read at once.
const CHUNK: usize = 16 * 1024;

/// The faults a proxy currently applies (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActiveFaults {
    /// Connections are reset and refused.
    pub cut: bool,
    /// Bytes vanish in both directions.
    pub blackhole: bool,
    /// Added delay per chunk; zero when none.
    pub latency: Duration,
    /// Bytes per second per direction and connection; `None` when unlimited.
    pub bandwidth: Option<u64>,
}

impl ActiveFaults {
    /// True if any fault is active.
    pub fn any(&self) -> bool {
        self.cut || self.blackhole || !self.latency.is_zero() || self.bandwidth.is_some()
    }
}

impl fmt::Display for ActiveFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.cut {
            parts.push("cut".to_string());
        }
        if self.blackhole {
            parts.push("blackhole".to_string());
        }
        if !self.latency.is_zero() {
            parts.push(format!("latency {:?}", self.latency));
        }
        if let Some(b) = self.bandwidth {
            parts.push(format!("bandwidth {b} B/s"));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Counters of one proxy since it started, and the faults active now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyStats {
    /// Connections accepted (including the ones reset at once because of a cut).
    pub accepted: u64,
    /// Connections accepted during a cut and reset at once.
    pub refused: u64,
    /// Connections closed because the upstream could not be reached.
    pub upstream_failures: u64,
    /// Connections reset by [`FaultProxy::cut`], [`FaultProxy::drop_connections`], or by the
    /// end of a blackhole that cost them bytes.
    pub reset: u64,
    /// Connections open right now.
    pub open: u64,
    /// Bytes delivered client → upstream.
    pub bytes_to_upstream: u64,
    /// Bytes delivered upstream → client.
    pub bytes_to_client: u64,
    /// Bytes from the client that a blackhole swallowed.
    pub dropped_to_upstream: u64,
    /// Bytes from the upstream that a blackhole swallowed.
    pub dropped_to_client: u64,
    /// The faults active when the stats were taken.
    pub faults: ActiveFaults,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    upstream_failures: AtomicU64,
    reset: AtomicU64,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
    dropped_to_upstream: AtomicU64,
    dropped_to_client: AtomicU64,
    late_to_upstream: AtomicU64,
}

struct Shared {
    /// Thread name prefix: `px<listen port>`.
    name: String,
    upstream: SocketAddr,
    shutdown: AtomicBool,
    cut: AtomicBool,
    blackhole: AtomicBool,
    latency_us: AtomicU64,
    /// Bytes per second; 0 = unlimited.
    bandwidth: AtomicU64,
    /// Per-connection latency: `(low µs, high µs, PRNG state)`; each connection draws once.
    per_conn: Mutex<Option<(u64, u64, u64)>>,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    counters: Counters,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Draws a per-connection delay if per-connection latency is on (`u64::MAX` if not).
    fn draw_latency(&self) -> u64 {
        let mut g = self.per_conn.lock().unwrap_or_else(|e| e.into_inner());
        let Some((lo, hi, state)) = g.as_mut() else { return u64::MAX };
        // xorshift64*
        let mut x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        *lo + x.wrapping_mul(0x2545_F491_4F6C_DD1D) % (*hi - *lo + 1)
    }

    fn faults(&self) -> ActiveFaults {
        let bw = self.bandwidth.load(Ordering::SeqCst);
        ActiveFaults {
            cut: self.cut.load(Ordering::SeqCst),
            blackhole: self.blackhole.load(Ordering::SeqCst),
            latency: Duration::from_micros(self.latency_us.load(Ordering::SeqCst)),
            bandwidth: (bw > 0).then_some(bw),
        }
    }

    /// Whether a connection's threads must stop now.
    fn stopping(&self, conn: &Conn) -> bool {
        self.shutdown.load(Ordering::SeqCst) || self.cut.load(Ordering::SeqCst) || conn.closed.load(Ordering::SeqCst)
    }

    /// Resets every open connection for which `pick` is true; returns how many.
    fn reset_where(&self, pick: impl Fn(&Conn) -> bool) -> usize {
        let conns: Vec<Arc<Conn>> = self.conns().values().filter(|c| pick(c)).cloned().collect();
        let mut n = 0;
        for c in conns {
            if c.abort() {
                n += 1;
            }
        }
        self.counters.reset.fetch_add(n as u64, Ordering::SeqCst);
        n
    }
}

/// One proxied connection: the client socket and (once connected) the upstream socket.
struct Conn {
    client: TcpStream,
    upstream: Mutex<Option<TcpStream>>,
    closed: AtomicBool,
    /// Lost bytes to a blackhole: reset when the blackhole ends.
    tainted: AtomicBool,
    /// This connection's own delay in µs ([`FaultProxy::latency_per_connection`]);
    /// `u64::MAX` when the proxy-wide latency applies.
    latency_us: AtomicU64,
    /// The client side was closed by [`FaultProxy::orphan_connections`]: bytes already
    /// read from the client are still delivered upstream; nothing goes back to the client.
    orphaned: AtomicBool,
    /// Bytes held for the upstream right now (delay line).
    queued_up: AtomicU64,
    /// [`FaultProxy::hold_open_connections`]: nothing is delivered upstream until released.
    held: AtomicBool,
}

impl Conn {
    /// Resets both sockets: no FIN is sent; the last descriptor's close sends RST.
    /// Returns false if the connection was already closed.
    fn abort(&self) -> bool {
        if self.closed.swap(true, Ordering::SeqCst) {
            return false;
        }
        reset_socket(&self.client);
        if let Some(up) = self.upstream.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            reset_socket(up);
        }
        true
    }
}

/// Sets `SO_LINGER {on, 0}` (close sends RST and discards unsent data) and shuts the read
/// side, which wakes a thread blocked reading without sending anything to the peer.
fn reset_socket(s: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: plain setsockopt on a descriptor we own, with a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Read);
}

/// A TCP proxy in front of one upstream, with faults the test injects (see the module docs).
///
/// Dropping it stops the listener, resets every connection and joins every thread.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("faults", &self.shared.faults())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:<free port>` that forwards every connection to
    /// `upstream`. The upstream is connected per accepted connection, so it need not be up
    /// yet (a connection made while it is down is closed at once).
    ///
    /// # Errors
    ///
    /// Binding the listener or starting the accept thread failed.
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            name: format!("px{}", addr.port()),
            upstream,
            shutdown: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            blackhole: AtomicBool::new(false),
            latency_us: AtomicU64::new(0),
            bandwidth: AtomicU64::new(0),
            per_conn: Mutex::new(None),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        let sh = shared.clone();
        let accept_thread =
            thread::Builder::new().name(format!("{}a", shared.name)).spawn(move || accept_loop(&sh, &listener))?;
        Ok(FaultProxy { addr, shared, accept_thread: Some(accept_thread) })
    }

    /// The address clients connect to (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Resets every open connection and refuses new ones (accepts and resets them at once)
    /// until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.reset_where(|_| true);
    }

    /// Keeps connections open but silently drops every byte in both directions until
    /// [`heal`](Self::heal); new connections are accepted and never answered. Connections
    /// that lose bytes are reset when the blackhole ends.
    pub fn blackhole(&self) {
        self.shared.blackhole.store(true, Ordering::SeqCst);
    }

    /// Delays every chunk by `delay` (zero clears it). Applies to bytes read from now on.
    pub fn latency(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.latency_us.store(us, Ordering::SeqCst);
    }

    /// Gives every open connection, and every one accepted from now on, its own delay drawn
    /// uniformly from `low..=high` (seeded by `seed`), applied to bytes read from now on.
    /// Returns the delays given to the open connections. Cleared by [`heal`](Self::heal).
    pub fn latency_per_connection(&self, low: Duration, high: Duration, seed: u64) -> Vec<Duration> {
        let lo = u64::try_from(low.as_micros()).unwrap_or(u64::MAX - 1);
        let hi = u64::try_from(high.as_micros()).unwrap_or(u64::MAX - 1).max(lo);
        *self.shared.per_conn.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((lo, hi, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1));
        let conns: Vec<Arc<Conn>> = self.shared.conns().values().cloned().collect();
        conns
            .iter()
            .map(|c| {
                let us = self.shared.draw_latency();
                c.latency_us.store(us, Ordering::SeqCst);
                Duration::from_micros(us)
            })
            .collect()
    }

    /// Closes the client side of every open connection (the client reads EOF and may
    /// reconnect) while the bytes the proxy already holds for the upstream are still
    /// delivered after their delay; answers are dropped. Returns how many connections were
    /// orphaned. See the module docs (reordering).
    pub fn orphan_connections(&self) -> usize {
        let conns: Vec<Arc<Conn>> = self.shared.conns().values().cloned().collect();
        let mut n = 0;
        for c in conns {
            if !c.closed.load(Ordering::SeqCst) && !c.orphaned.swap(true, Ordering::SeqCst) {
                let _ = c.client.shutdown(Shutdown::Both);
                n += 1;
            }
        }
        n
    }

    /// Holds back everything the currently open connections carry to the upstream (the
    /// bytes are kept, in order) until [`release_held`](Self::release_held) or
    /// [`heal`](Self::heal); new connections are not held. Returns how many were held.
    pub fn hold_open_connections(&self) -> usize {
        let conns: Vec<Arc<Conn>> = self.shared.conns().values().cloned().collect();
        conns.iter().filter(|c| !c.held.swap(true, Ordering::SeqCst)).count()
    }

    /// Delivers what [`hold_open_connections`](Self::hold_open_connections) held back.
    pub fn release_held(&self) {
        for c in self.shared.conns().values() {
            c.held.store(false, Ordering::SeqCst);
        }
    }

    /// Bytes delivered upstream after their connection was orphaned (in flight when the
    /// client went away), since the proxy started.
    pub fn late_bytes_delivered(&self) -> u64 {
        self.shared.counters.late_to_upstream.load(Ordering::SeqCst)
    }

    /// Bytes read from clients and not yet delivered upstream, over all open connections.
    pub fn queued_to_upstream(&self) -> u64 {
        self.shared.conns().values().map(|c| c.queued_up.load(Ordering::SeqCst)).sum()
    }

    /// Limits each direction of each connection to `bytes_per_sec` (0 is treated as 1).
    pub fn bandwidth(&self, bytes_per_sec: u64) {
        self.shared.bandwidth.store(bytes_per_sec.max(1), Ordering::SeqCst);
    }

    /// Clears every fault. Connections that lost bytes to a blackhole are reset (see the
    /// module docs); every other open connection carries on.
    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
        self.shared.latency_us.store(0, Ordering::SeqCst);
        self.shared.bandwidth.store(0, Ordering::SeqCst);
        self.shared.blackhole.store(false, Ordering::SeqCst);
        *self.shared.per_conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
        for c in self.shared.conns().values() {
            c.latency_us.store(u64::MAX, Ordering::SeqCst);
            c.held.store(false, Ordering::SeqCst);
        }
        self.shared.reset_where(|c| c.tainted.load(Ordering::SeqCst));
    }

    /// Resets every open connection once, without refusing new ones (a brief disconnect).
    /// Returns how many were reset.
    pub fn drop_connections(&self) -> usize {
        self.shared.reset_where(|_| true)
    }

    /// The faults active now.
    pub fn faults(&self) -> ActiveFaults {
        self.shared.faults()
    }

    /// Counters since start and the faults active now.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ProxyStats {
            accepted: get(&c.accepted),
            refused: get(&c.refused),
            upstream_failures: get(&c.upstream_failures),
            reset: get(&c.reset),
            open: self.shared.conns().len() as u64,
            bytes_to_upstream: get(&c.bytes_to_upstream),
            bytes_to_client: get(&c.bytes_to_client),
            dropped_to_upstream: get(&c.dropped_to_upstream),
            dropped_to_client: get(&c.dropped_to_client),
            faults: self.shared.faults(),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        // No new connection threads from here on.
        self.shared.reset_where(|_| true);
        let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(sh: &Arc<Shared>, listener: &TcpListener) {
    while !sh.shutdown.load(Ordering::SeqCst) {
        reap_finished(sh);
        if !wait_readable(listener, POLL) {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => handle_accepted(sh, stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            // EMFILE and friends: back off instead of spinning.
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Joins connection threads that already ended, so the list stays short.
fn reap_finished(sh: &Shared) {
    let mut threads = sh.threads.lock().unwrap_or_else(|e| e.into_inner());
    let mut i = 0;
    while i < threads.len() {
        if threads[i].is_finished() {
            let _ = threads.swap_remove(i).join();
        } else {
            i += 1;
        }
    }
}

/// `poll(2)` for readability with a timeout; true if readable (or on a poll error, so the
/// caller's non-blocking accept decides).
fn wait_readable(listener: &TcpListener, timeout: Duration) -> bool {
    let mut fds = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, count 1.
    let rc = unsafe { libc::poll(&mut fds, 1, timeout.as_millis() as libc::c_int) };
    rc != 0
}

fn handle_accepted(sh: &Arc<Shared>, stream: TcpStream) {
    sh.counters.accepted.fetch_add(1, Ordering::SeqCst);
    if sh.cut.load(Ordering::SeqCst) || stream.set_nonblocking(false).is_err() {
        sh.counters.refused.fetch_add(1, Ordering::SeqCst);
        reset_socket(&stream);
        return;
    }
    let _ = stream.set_nodelay(true);
    let conn = Arc::new(Conn {
        client: stream,
        upstream: Mutex::new(None),
        closed: AtomicBool::new(false),
        tainted: AtomicBool::new(false),
        latency_us: AtomicU64::new(sh.draw_latency()),
        orphaned: AtomicBool::new(false),
        queued_up: AtomicU64::new(0),
        held: AtomicBool::new(false),
    });
    let id = sh.next_id.fetch_add(1, Ordering::SeqCst);
    sh.conns().insert(id, conn.clone());
    let sh2 = sh.clone();
    let spawned = thread::Builder::new().name(format!("{}c{id}", sh.name)).spawn(move || {
        serve(&sh2, &conn, id);
        sh2.conns().remove(&id);
    });
    match spawned {
        Ok(h) => sh.threads.lock().unwrap_or_else(|e| e.into_inner()).push(h),
        Err(_) => {
            if let Some(c) = sh.conns().remove(&id) {
                c.abort();
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Dir {
    ToUpstream,
    ToClient,
}

impl Dir {
    fn bytes<'a>(&self, c: &'a Counters) -> &'a AtomicU64 {
        match self {
            Dir::ToUpstream => &c.bytes_to_upstream,
            Dir::ToClient => &c.bytes_to_client,
        }
    }
    fn dropped<'a>(&self, c: &'a Counters) -> &'a AtomicU64 {
        match self {
            Dir::ToUpstream => &c.dropped_to_upstream,
            Dir::ToClient => &c.dropped_to_client,
        }
    }
}

/// Runs one connection: holds the client through a blackhole, connects upstream, then pumps
/// both directions until both end.
fn serve(sh: &Arc<Shared>, conn: &Arc<Conn>, id: u64) {
    // While blackholed the proxy "never reaches" the upstream: it reads and drops what the
    // client sends and answers nothing.
    if hold_through_blackhole(sh, conn).is_err() || sh.stopping(conn) || conn.tainted.load(Ordering::SeqCst) {
        conn.abort();
        return;
    }
    let upstream = match TcpStream::connect_timeout(&sh.upstream, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(_) => {
            sh.counters.upstream_failures.fetch_add(1, Ordering::SeqCst);
            conn.abort();
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let clones = (|| Ok::<_, io::Error>((conn.client.try_clone()?, upstream.try_clone()?, upstream.try_clone()?)))();
    let Ok((client_rd, upstream_wr, upstream_rd)) = clones else {
        conn.abort();
        return;
    };
    *conn.upstream.lock().unwrap_or_else(|e| e.into_inner()) = Some(upstream);
    if conn.closed.load(Ordering::SeqCst) {
        // Aborted while connecting: `abort` may have missed the upstream socket.
        if let Some(up) = conn.upstream.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            reset_socket(up);
        }
        return;
    }
    let Ok(client_wr) = conn.client.try_clone() else {
        conn.abort();
        return;
    };
    let (sh2, conn2) = (sh.clone(), conn.clone());
    let down = thread::Builder::new()
        .name(format!("{}d{id}", sh.name))
        .spawn(move || pump(&sh2, &conn2, upstream_rd, client_wr, Dir::ToClient));
    let Ok(down) = down else {
        conn.abort();
        return;
    };
    let up_ok = pump(sh, conn, client_rd, upstream_wr, Dir::ToUpstream);
    if !up_ok {
        conn.abort();
    }
    let down_ok = down.join().unwrap_or(false);
    if !down_ok {
        conn.abort();
    }
    // Both directions ended cleanly (FIN both ways): the sockets close normally when the
    // last clone drops, so delivered data is not discarded.
    conn.closed.store(true, Ordering::SeqCst);
}

/// Reads and drops client bytes while a blackhole is active and nothing was connected yet.
fn hold_through_blackhole(sh: &Shared, conn: &Conn) -> Result<(), ()> {
    if !sh.blackhole.load(Ordering::SeqCst) {
        return Ok(());
    }
    let mut client = conn.client.try_clone().map_err(|_| ())?;
    client.set_read_timeout(Some(POLL)).map_err(|_| ())?;
    let mut buf = [0u8; 4096];
    while sh.blackhole.load(Ordering::SeqCst) && !sh.stopping(conn) {
        match client.read(&mut buf) {
            // The client gave up (or the proxy reset it): nothing to forward.
            Ok(0) => return Err(()),
            Ok(n) => {
                sh.counters.dropped_to_upstream.fetch_add(n as u64, Ordering::SeqCst);
                conn.tainted.store(true, Ordering::SeqCst);
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => return Err(()),
        }
    }
    Ok(())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

/// Copies `src` to `dst` through a delay line, applying the proxy's faults. Returns true if
/// the source ended cleanly (EOF, forwarded as FIN), false if the connection must be reset.
fn pump(sh: &Shared, conn: &Conn, mut src: TcpStream, mut dst: TcpStream, dir: Dir) -> bool {
    if dst.set_write_timeout(Some(POLL)).is_err() {
        return false;
    }
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut queued = 0usize;
    let mut link_free = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let mut eof = false;
    loop {
        if sh.stopping(conn) {
            return false;
        }
        let blackhole = sh.blackhole.load(Ordering::SeqCst);
        if blackhole && !queue.is_empty() {
            dir.dropped(&sh.counters).fetch_add(queued as u64, Ordering::SeqCst);
            conn.tainted.store(true, Ordering::SeqCst);
            queue.clear();
            queued = 0;
        }
        if !blackhole && conn.tainted.load(Ordering::SeqCst) {
            // The blackhole ended (heal also resets; this covers the race).
            if conn.abort() {
                sh.counters.reset.fetch_add(1, Ordering::SeqCst);
            }
            return false;
        }
        // Deliver what is due (nothing goes back to an orphaned client).
        let orphaned = conn.orphaned.load(Ordering::SeqCst);
        let now = Instant::now();
        let held = matches!(dir, Dir::ToUpstream) && conn.held.load(Ordering::SeqCst);
        while !held && queue.front().is_some_and(|(due, _)| *due <= now) {
            let Some((_, data)) = queue.pop_front() else { break };
            queued -= data.len();
            if matches!(dir, Dir::ToClient) && orphaned {
                continue;
            }
            if !write_fully(sh, conn, &mut dst, &data, dir) {
                return false;
            }
        }
        if matches!(dir, Dir::ToUpstream) {
            conn.queued_up.store(queued as u64, Ordering::SeqCst);
        }
        let next_due = queue.front().map(|(due, _)| due.saturating_duration_since(Instant::now()));
        let wait = next_due.unwrap_or(POLL).clamp(Duration::from_millis(1), POLL);
        if eof {
            if !queue.is_empty() {
                thread::sleep(wait);
                continue;
            }
            if conn.tainted.load(Ordering::SeqCst) {
                // The FIN vanished into the blackhole: wait for heal (reset) or shutdown.
                thread::sleep(POLL);
                continue;
            }
            if matches!(dir, Dir::ToUpstream) && conn.orphaned.load(Ordering::SeqCst) {
                // Let the upstream act on the late bytes before it sees the end of the stream
                // (a server may drop requests still in progress when its peer goes away).
                let until = Instant::now() + ORPHAN_LINGER;
                while Instant::now() < until && !sh.stopping(conn) {
                    thread::sleep(POLL);
                }
            }
            let _ = dst.shutdown(Shutdown::Write);
            return true;
        }
        if queued >= MAX_QUEUED {
            thread::sleep(wait);
            continue;
        }
        let bw = sh.bandwidth.load(Ordering::SeqCst);
        // Smaller reads under a bandwidth limit keep delivery smooth (about 20 chunks/s).
        let max = if bw > 0 { ((bw / 20) as usize).clamp(1, CHUNK) } else { CHUNK };
        if src.set_read_timeout(Some(wait)).is_err() {
            return false;
        }
        match src.read(&mut buf[..max]) {
            Ok(0) => {
                eof = true;
                if sh.blackhole.load(Ordering::SeqCst) {
                    conn.tainted.store(true, Ordering::SeqCst);
                }
            }
            Ok(_) if matches!(dir, Dir::ToClient) && conn.orphaned.load(Ordering::SeqCst) => {}
            Ok(n) => {
                // Tainted and no longer blackholed: heal is resetting it; deliver nothing more.
                if sh.blackhole.load(Ordering::SeqCst) || conn.tainted.load(Ordering::SeqCst) {
                    dir.dropped(&sh.counters).fetch_add(n as u64, Ordering::SeqCst);
                    conn.tainted.store(true, Ordering::SeqCst);
                    continue;
                }
                let now = Instant::now();
                // The limits in force when the bytes arrived (the read may have started before).
                let own = conn.latency_us.load(Ordering::SeqCst);
                let latency =
                    Duration::from_micros(if own == u64::MAX { sh.latency_us.load(Ordering::SeqCst) } else { own });
                let bw = sh.bandwidth.load(Ordering::SeqCst);
                let mut release = now;
                if bw > 0 {
                    let start = link_free.max(now);
                    link_free = start + Duration::from_secs_f64(n as f64 / bw as f64);
                    release = link_free;
                } else {
                    link_free = now;
                }
                release += latency;
                // Keep the stream in order when the latency shrinks mid-flight.
                if let Some((last, _)) = queue.back() {
                    release = release.max(*last);
                }
                let held = matches!(dir, Dir::ToUpstream) && conn.held.load(Ordering::SeqCst);
                if release <= now && queue.is_empty() && !held {
                    if !write_fully(sh, conn, &mut dst, &buf[..n], dir) {
                        return false;
                    }
                } else {
                    queued += n;
                    queue.push_back((release, buf[..n].to_vec()));
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => return false,
        }
    }
}

/// Writes all of `data` unless the connection is stopped (false) or a blackhole starts
/// (the rest vanishes).
fn write_fully(sh: &Shared, conn: &Conn, dst: &mut TcpStream, data: &[u8], dir: Dir) -> bool {
    let mut off = 0;
    while off < data.len() {
        if sh.stopping(conn) {
            return false;
        }
        if sh.blackhole.load(Ordering::SeqCst) || conn.tainted.load(Ordering::SeqCst) {
            dir.dropped(&sh.counters).fetch_add((data.len() - off) as u64, Ordering::SeqCst);
            conn.tainted.store(true, Ordering::SeqCst);
            return true;
        }
        match dst.write(&data[off..]) {
            Ok(0) => return false,
            Ok(n) => {
                off += n;
                dir.bytes(&sh.counters).fetch_add(n as u64, Ordering::SeqCst);
                if matches!(dir, Dir::ToUpstream) && conn.orphaned.load(Ordering::SeqCst) {
                    sh.counters.late_to_upstream.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => return false,
        }
    }
    true
}

/// One [`FaultProxy`] per upstream, e.g. one per ZooKeeper member, for one client process.
///
/// Give the process [`connect_string`](Self::connect_string) instead of the ensemble's; then
/// [`cut`](Self::cut) or [`blackhole`](Self::blackhole) partitions that process from the
/// whole ensemble while other processes (with their own mesh, or direct) stay connected.
/// Single proxies stay reachable through [`proxy`](Self::proxy) to cut one member only.
#[derive(Debug)]
pub struct ProxyMesh {
    proxies: Vec<FaultProxy>,
}

impl ProxyMesh {
    /// Starts one proxy per upstream, in order.
    ///
    /// # Errors
    ///
    /// A proxy failed to start (the ones already started are stopped).
    pub fn start(upstreams: &[SocketAddr]) -> io::Result<ProxyMesh> {
        let proxies = upstreams.iter().map(|u| FaultProxy::start(*u)).collect::<io::Result<Vec<_>>>()?;
        Ok(ProxyMesh { proxies })
    }

    /// A mesh in front of every member of `zk` (client ports, in member order).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn for_zk(zk: &crate::ZkEnsemble) -> io::Result<ProxyMesh> {
        let ups: Vec<SocketAddr> =
            (0..zk.len()).map(|i| SocketAddr::from(([127, 0, 0, 1], zk.client_port(i)))).collect();
        ProxyMesh::start(&ups)
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,...`: the proxies' addresses, in upstream order.
    pub fn connect_string(&self) -> String {
        self.proxies.iter().map(|p| p.addr().to_string()).collect::<Vec<_>>().join(",")
    }

    /// Number of proxies.
    pub fn len(&self) -> usize {
        self.proxies.len()
    }

    /// True if the mesh has no proxy.
    pub fn is_empty(&self) -> bool {
        self.proxies.is_empty()
    }

    /// The proxy in front of upstream `i`.
    ///
    /// # Panics
    ///
    /// If `i` is out of range.
    pub fn proxy(&self, i: usize) -> &FaultProxy {
        &self.proxies[i]
    }

    /// All proxies, in upstream order.
    pub fn proxies(&self) -> &[FaultProxy] {
        &self.proxies
    }

    /// [`FaultProxy::cut`] on every proxy.
    pub fn cut(&self) {
        self.proxies.iter().for_each(FaultProxy::cut);
    }

    /// [`FaultProxy::blackhole`] on every proxy.
    pub fn blackhole(&self) {
        self.proxies.iter().for_each(FaultProxy::blackhole);
    }

    /// [`FaultProxy::latency`] on every proxy.
    pub fn latency(&self, delay: Duration) {
        self.proxies.iter().for_each(|p| p.latency(delay));
    }

    /// [`FaultProxy::bandwidth`] on every proxy.
    pub fn bandwidth(&self, bytes_per_sec: u64) {
        self.proxies.iter().for_each(|p| p.bandwidth(bytes_per_sec));
    }

    /// [`FaultProxy::heal`] on every proxy.
    pub fn heal(&self) {
        self.proxies.iter().for_each(FaultProxy::heal);
    }

    /// [`FaultProxy::drop_connections`] on every proxy; returns the total reset.
    pub fn drop_connections(&self) -> usize {
        self.proxies.iter().map(FaultProxy::drop_connections).sum()
    }

    /// [`FaultProxy::stats`] of every proxy, in upstream order.
    pub fn stats(&self) -> Vec<ProxyStats> {
        self.proxies.iter().map(FaultProxy::stats).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_display_and_any() {
        let f = ActiveFaults::default();
        assert!(!f.any());
        assert_eq!(f.to_string(), "none");
        let f = ActiveFaults { cut: true, latency: Duration::from_millis(5), bandwidth: Some(10), ..f };
        assert!(f.any());
        assert_eq!(f.to_string(), "cut, latency 5ms, bandwidth 10 B/s");
    }

    #[test]
    fn proxy_to_a_closed_port_closes_the_client() {
        let dead = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
        let p = FaultProxy::start(dead).unwrap();
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 8];
        let r = s.read(&mut b);
        assert!(matches!(r, Ok(0)) || r.is_err(), "{r:?}");
        crate::wait_until(Duration::from_secs(5), Duration::from_millis(10), "upstream failure counted", || {
            (p.stats().upstream_failures == 1).then_some(())
        })
        .unwrap();
    }
}

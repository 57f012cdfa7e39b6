//! An S3-compatible test server: moto's server (`pip install 'moto[server]'`) on 127.0.0.1.
//!
//! [`S3Server::start`] runs `moto_server -H 127.0.0.1 -p <free port>` (or
//! `python3 -m moto.server ...` when `moto_server` is not on `PATH`; `KEEL_TEST_MOTO`
//! overrides the program), forked from the harness's long-lived spawner thread with
//! `PDEATHSIG`, logging to `<temp dir>/moto.log`, and waits (at most 30 s) until it answers
//! HTTP. Dropping the handle SIGKILLs and reaps it.
//!
//! moto keeps everything in memory and checks no signatures: any access key works (tests use
//! [`S3Server::ACCESS_KEY`] / [`S3Server::SECRET_KEY`], region [`S3Server::REGION`],
//! path-style addressing). It implements conditional writes (`If-None-Match: *` → 412).
//!
//! Faults: [`stop`](S3Server::stop) / [`restart`](S3Server::restart) (same port; connection
//! refused in between; objects are lost, buckets made with
//! [`create_bucket`](S3Server::create_bucket) are made again) and
//! [`pause`](S3Server::pause) / [`resume`](S3Server::resume) (SIGSTOP: connections hang,
//! data is kept). [`put_object`](S3Server::put_object) overwrites an object behind the
//! back of the code under test (to corrupt a blob, say).

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::child;

/// How long [`S3Server::start`] and [`S3Server::restart`] wait for the server to answer.
pub const S3_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variable naming the program to run instead of `moto_server`.
pub const MOTO_ENV: &str = "KEEL_TEST_MOTO";

const INSTALL_HINT: &str = "is moto installed? pip install 'moto[server]'";

/// A running moto S3 server on `127.0.0.1:<port>`. See the module docs.
#[derive(Debug)]
#[must_use = "dropping the handle kills the server"]
pub struct S3Server {
    port: u16,
    dir: tempfile::TempDir,
    log: PathBuf,
    program: Vec<String>,
    child: Option<Child>,
    paused: bool,
    buckets: Mutex<Vec<String>>,
}

impl S3Server {
    /// Access key id tests should use (moto accepts any).
    pub const ACCESS_KEY: &'static str = "test";
    /// Secret key tests should use (moto accepts any).
    pub const SECRET_KEY: &'static str = "test";
    /// Region tests should use.
    pub const REGION: &'static str = "us-east-1";

    /// Starts moto on a free port and waits until it answers HTTP.
    ///
    /// # Errors
    ///
    /// The spawn error, or `TimedOut` / `UnexpectedEof` (it exited) with the tail of its log;
    /// each message says `pip install 'moto[server]'` in case moto is missing.
    pub fn start() -> io::Result<S3Server> {
        let dir = tempfile::Builder::new().prefix("keel-s3-").tempdir()?;
        let log = dir.path().join("moto.log");
        let mut server = S3Server {
            port: crate::ports::free_port(),
            dir,
            log,
            program: program(),
            child: None,
            paused: false,
            buckets: Mutex::new(Vec::new()),
        };
        server.launch()?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PID of the server process, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The directory holding the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a bucket (`PUT /<name>`); [`restart`](Self::restart) creates it again.
    ///
    /// # Errors
    ///
    /// A connection error, or `Other` with the status and body if moto refused.
    pub fn create_bucket(&self, name: &str) -> io::Result<()> {
        let (status, body) = self.request("PUT", &format!("/{name}"), &[], b"")?;
        if status != 200 {
            return Err(io::Error::other(format!(
                "create bucket {name:?} on {}: HTTP {status}: {}",
                self.endpoint(),
                String::from_utf8_lossy(&body)
            )));
        }
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !b.iter().any(|x| x == name) {
            b.push(name.to_string());
        }
        Ok(())
    }

    /// Writes `bytes` to `bucket/key` unconditionally (overwriting), bypassing the code
    /// under test.
    ///
    /// # Errors
    ///
    /// A connection error, or `Other` with the status and body.
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) -> io::Result<()> {
        let (status, body) = self.request("PUT", &format!("/{bucket}/{key}"), &[], bytes)?;
        if status != 200 {
            return Err(io::Error::other(format!(
                "PUT {}/{bucket}/{key}: HTTP {status}: {}",
                self.endpoint(),
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(())
    }

    /// The bytes of `bucket/key`, `None` if it does not exist.
    ///
    /// # Errors
    ///
    /// A connection error, or `Other` for a status other than 200 and 404.
    pub fn get_object(&self, bucket: &str, key: &str) -> io::Result<Option<Vec<u8>>> {
        let (status, body) = self.request("GET", &format!("/{bucket}/{key}"), &[], b"")?;
        match status {
            200 => Ok(Some(body)),
            404 => Ok(None),
            _ => Err(io::Error::other(format!(
                "GET {}/{bucket}/{key}: HTTP {status}: {}",
                self.endpoint(),
                String::from_utf8_lossy(&body)
            ))),
        }
    }

    /// SIGKILLs (after SIGCONT) and reaps the server: connections to the port are refused
    /// until [`restart`](Self::restart). Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            child::kill_and_reap(&mut c);
        }
        self.paused = false;
    }

    /// Starts the server again on the same port, waits until it answers, and creates again
    /// the buckets made with [`create_bucket`](Self::create_bucket) (empty: moto keeps
    /// objects in memory only).
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if it still runs; otherwise as [`start`](Self::start).
    pub fn restart(&mut self) -> io::Result<()> {
        if self.is_running() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the S3 server is still running; stop it first"));
        }
        self.launch()?;
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for b in buckets {
            self.create_bucket(&b)?;
        }
        Ok(())
    }

    /// SIGSTOP: the server keeps its port and data but answers nothing.
    ///
    /// # Errors
    ///
    /// `NotFound` if it is not running.
    pub fn pause(&mut self) -> io::Result<()> {
        self.signal(libc::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT after [`pause`](Self::pause).
    ///
    /// # Errors
    ///
    /// `NotFound` if it is not running.
    pub fn resume(&mut self) -> io::Result<()> {
        self.signal(libc::SIGCONT)?;
        self.paused = false;
        Ok(())
    }

    /// Whether the server process is alive (a paused one is).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        child::tail_file(&self.log, lines)
    }

    fn signal(&mut self, sig: libc::c_int) -> io::Result<()> {
        if !self.is_running() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "the S3 server is not running"));
        }
        child::signal(self.pid().unwrap_or(0), sig)
    }

    /// Spawns the server on `self.port` and waits until it answers `GET /`.
    fn launch(&mut self) -> io::Result<()> {
        let log = OpenOptions::new().create(true).append(true).open(&self.log)?;
        writeln!(&log, "=== chaos-tests: starting {} on port {} ===", self.program.join(" "), self.port)?;
        let mut cmd = Command::new(&self.program[0]);
        cmd.args(&self.program[1..])
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .current_dir(self.dir.path())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let c = child::spawn_with_deathsig(cmd).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot start {}: {e}; {INSTALL_HINT}", self.program.join(" ")))
        })?;
        self.child = Some(c);
        self.paused = false;

        let start = Instant::now();
        loop {
            if !self.is_running() {
                return Err(self.fail(io::ErrorKind::UnexpectedEof, "exited before answering HTTP"));
            }
            if let Ok((status, _)) = self.request_with_timeout("GET", "/", &[], b"", Duration::from_secs(1)) {
                if status == 200 {
                    return Ok(());
                }
            }
            if start.elapsed() >= S3_READY_TIMEOUT {
                return Err(
                    self.fail(io::ErrorKind::TimedOut, &format!("did not answer HTTP within {S3_READY_TIMEOUT:?}"))
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server and builds an error with the log tail.
    fn fail(&mut self, kind: io::ErrorKind, what: &str) -> io::Error {
        self.stop();
        io::Error::new(
            kind,
            format!(
                "S3 server ({} on 127.0.0.1:{}) {what}; {INSTALL_HINT}\n--- {} (tail):\n{}",
                self.program.join(" "),
                self.port,
                self.log.display(),
                self.log_tail(30)
            ),
        )
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.request_with_timeout(method, path, headers, body, Duration::from_secs(10))
    }

    /// One HTTP/1.1 request with `Connection: close` and a dummy SigV4 `Authorization`
    /// header (moto refuses some anonymous requests but checks no signatures).
    fn request_with_timeout(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> io::Result<(u16, Vec<u8>)> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential={}/20240101/{}/s3/aws4_request, \
             SignedHeaders=host, Signature=0\r\n",
            self.port,
            body.len(),
            Self::ACCESS_KEY,
            Self::REGION
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        parse_response(&resp)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The command (program and leading arguments) that runs moto's server.
fn program() -> Vec<String> {
    if let Some(p) = std::env::var_os(MOTO_ENV).filter(|p| !p.is_empty()) {
        return vec![p.to_string_lossy().into_owned()];
    }
    if on_path("moto_server") {
        return vec!["moto_server".into()];
    }
    vec!["python3".into(), "-m".into(), "moto.server".into()]
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()))
}

/// Status and body of a complete response (`Content-Length`, chunked, or until close).
fn parse_response(resp: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let head_end = resp.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&resp[..head_end]);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("bad HTTP status line"))?;
    let mut body = resp[head_end + 4..].to_vec();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_ascii_lowercase())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(|| bad("truncated chunk"))?;
            let size = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            if rest.len() < size {
                return Err(bad("truncated chunk"));
            }
            out.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        body = out;
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.truncate(len);
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abc"[..]));
        let (s, b) = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (404, &b"abc"[..]));
        assert!(parse_response(b"garbage").is_err());
    }

    /// Needs moto (`pip install 'moto[server]'`); fails, never skips, without it.
    #[test]
    fn moto_round_trip_stop_restart() {
        let mut s = S3Server::start().unwrap_or_else(|e| panic!("{e}"));
        s.create_bucket("bkt-1").unwrap();
        s.put_object("bkt-1", "k/x", b"hello").unwrap();
        assert_eq!(s.get_object("bkt-1", "k/x").unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(s.get_object("bkt-1", "missing").unwrap(), None);
        let port = s.port();
        s.stop();
        assert!(s.get_object("bkt-1", "k/x").is_err(), "stopped server answered");
        s.restart().unwrap();
        assert_eq!(s.port(), port);
        assert_eq!(s.get_object("bkt-1", "k/x").unwrap(), None, "bucket is back, empty");
    }
}

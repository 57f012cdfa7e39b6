//! Bounded waiting and a tiny blocking HTTP client for polling REST endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

/// Calls `f` every `poll` until it returns `Some`, for at most `timeout`.
///
/// `f` is always called at least once, and once more at the deadline, so a condition that
/// becomes true during the last sleep is not missed.
///
/// # Errors
///
/// `"timed out after {timeout:?} waiting for {what}"` when `f` never returned `Some`.
pub fn wait_until<T>(
    timeout: Duration,
    poll: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!("timed out after {:?} waiting for {what} (limit {timeout:?})", now - start));
        }
        thread::sleep(poll.min(deadline - now));
    }
}

/// The largest HTTP response [`http_request_json`] reads (head and body): 16 MiB.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// `GET http://{addr}{path}` and parse the body as JSON.
///
/// See [`http_request_json`] for the details and errors.
pub fn http_get_json(addr: &str, path: &str, timeout: Duration) -> Result<(u16, serde_json::Value), String> {
    http_request_json("GET", addr, path, None, timeout)
}

/// One blocking HTTP/1.1 request with `Connection: close`; returns the status code and the
/// body parsed as JSON.
///
/// `addr` is `host:port` (e.g. a dispatcher's `rest` address from its ready line). `body`, if
/// given, is sent as `application/json`. The response may be framed by `Content-Length`,
/// `Transfer-Encoding: chunked` or the end of the connection. An empty body gives
/// `Value::Null`; a body that is not JSON (e.g. a plain-text error page) gives
/// `Value::String(body)`, so callers can still assert on the status code. `timeout` bounds
/// the whole exchange, connect included.
///
/// # Errors
///
/// A message naming the method, address and path when connecting, writing or reading fails,
/// the deadline passes, the response is larger than [`MAX_RESPONSE_BYTES`], or it is not valid
/// HTTP/1.x.
pub fn http_request_json(
    method: &str,
    addr: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<(u16, serde_json::Value), String> {
    let what = format!("{method} http://{addr}{path}");
    let deadline = Instant::now() + timeout;
    let sock: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("{what}: bad address: {e}"))?
        .next()
        .ok_or_else(|| format!("{what}: address resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("{what}: connect: {e}"))?;
    let body = body.map(|b| b.to_string());
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n");
    if let Some(b) = &body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = &body {
        req.push_str(b);
    }
    let remaining = |what: &str| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{what}: timed out after {timeout:?}"))
    };
    stream
        .set_write_timeout(Some(remaining(&what)?))
        .and_then(|_| stream.write_all(req.as_bytes()))
        .map_err(|e| format!("{what}: write: {e}"))?;

    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(parsed) = try_parse_response(&buf, false).map_err(|e| format!("{what}: {e}"))? {
            return Ok(parsed);
        }
        stream.set_read_timeout(Some(remaining(&what)?)).map_err(|e| format!("{what}: {e}"))?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                return try_parse_response(&buf, true)
                    .map_err(|e| format!("{what}: {e}"))?
                    .ok_or_else(|| format!("{what}: connection closed mid-response"));
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                // The address may come from a stranger (a worker's registered metrics
                // address): a response never grows without bound.
                if buf.len() > MAX_RESPONSE_BYTES {
                    return Err(format!(
                        "{what}: response larger than {MAX_RESPONSE_BYTES} bytes (the limit); not read further"
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{what}: read: {e}")),
        }
    }
}

/// Parses a complete response from `buf`; `Ok(None)` means more bytes are needed. With
/// `eof`, a body without framing ends at the end of `buf`.
fn try_parse_response(buf: &[u8], eof: bool) -> Result<Option<(u16, serde_json::Value)>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {status_line:?}"));
    }
    let status: u16 =
        parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad status line: {status_line:?}"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().map_err(|_| format!("bad Content-Length: {value:?}"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        }
    }
    let rest = &buf[head_end + 4..];
    let body: Vec<u8> = if chunked {
        match decode_chunked(rest)? {
            Some(b) => b,
            None if eof => return Err("connection closed inside a chunked body".into()),
            None => return Ok(None),
        }
    } else if let Some(len) = content_length {
        if rest.len() < len {
            if eof {
                return Err(format!("connection closed after {} of {len} body bytes", rest.len()));
            }
            return Ok(None);
        }
        rest[..len].to_vec()
    } else if eof || status == 204 || status == 304 || (100..200).contains(&status) {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some((status, body_to_json(&body))))
}

fn body_to_json(body: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&text).unwrap_or_else(|_| serde_json::Value::String(text.into_owned()))
}

/// Decodes a chunked body; `Ok(None)` if the terminating zero-size chunk is not in `buf` yet.
fn decode_chunked(mut buf: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[..line_end]);
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size line: {line:?}"))?;
        buf = &buf[line_end + 2..];
        if size == 0 {
            // Trailers (if any) are ignored; the body is complete.
            return Ok(Some(out));
        }
        if buf.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&buf[..size]);
        if &buf[size..size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        buf = &buf[size + 2..];
    }
}

/// Every file under `dir` (recursively), relative to it, sorted; empty if `dir` is missing.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.to_string_lossy().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Milliseconds since the Unix epoch (the clock of history events).
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that answers with an endless body (a stranger's metrics address) is read up
    /// to the limit only, with an error naming it.
    #[test]
    fn an_endless_response_is_cut_at_the_limit() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
            let block = vec![b'x'; 1 << 16];
            // Bounded: at most 64 MiB, stopped when the client hangs up.
            for _ in 0..1024 {
                if s.write_all(&block).is_err() {
                    break;
                }
            }
        });
        let err = http_get_json(&addr, "/metrics", Duration::from_secs(60)).unwrap_err();
        assert!(err.contains("larger than 16777216 bytes"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn wait_until_returns_value_or_names_what_it_waited_for() {
        let mut n = 0;
        let v = wait_until(Duration::from_secs(2), Duration::from_millis(1), "n=3", || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(v, Ok(3));
        let err =
            wait_until::<()>(Duration::from_millis(50), Duration::from_millis(10), "the moon", || None).unwrap_err();
        assert!(err.contains("the moon") && err.contains("timed out"), "{err}");
    }

    /// Serves one canned response per connection and returns the address.
    fn serve_once(response: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&b[..n]);
            }
            // Write in two pieces to exercise incremental parsing.
            let (a, rest) = response.split_at(response.len() / 2);
            s.write_all(a).unwrap();
            s.flush().unwrap();
            thread::sleep(Duration::from_millis(20));
            s.write_all(rest).unwrap();
        });
        addr
    }

    #[test]
    fn http_content_length() {
        let addr =
            serve_once(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 11\r\n\r\n{\"a\":[1,2]}");
        let (status, v) = http_get_json(&addr, "/x", Duration::from_secs(5)).unwrap();
        assert_eq!(status, 200);
        assert_eq!(v, serde_json::json!({"a": [1, 2]}));
    }

    #[test]
    fn http_chunked() {
        let addr = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{\"k\"\r\n5\r\n:true\r\n1\r\n}\r\n0\r\n\r\n",
        );
        let (status, v) = http_get_json(&addr, "/", Duration::from_secs(5)).unwrap();
        assert_eq!(status, 200);
        assert_eq!(v, serde_json::json!({"k": true}));
    }

    #[test]
    fn http_until_close_and_non_json() {
        let addr = serve_once(b"HTTP/1.1 404 Not Found\r\n\r\nno such job");
        let (status, v) = http_get_json(&addr, "/jobs/1", Duration::from_secs(5)).unwrap();
        assert_eq!(status, 404);
        assert_eq!(v, serde_json::Value::String("no such job".into()));
    }

    #[test]
    fn http_errors_name_the_request() {
        let port = crate::ports::free_port();
        let err = http_get_json(&format!("127.0.0.1:{port}"), "/p", Duration::from_secs(2)).unwrap_err();
        assert!(err.contains("GET http://127.0.0.1:") && err.contains("/p"), "{err}");

        // A server that never answers: the deadline applies.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let t = Instant::now();
        let err = http_get_json(&addr, "/slow", Duration::from_millis(300)).unwrap_err();
        eprintln!("no answer reported after {:?}: {err}", t.elapsed());
        assert!(err.contains("/slow"), "the error names the request: {err}");
        drop(listener);
    }
}

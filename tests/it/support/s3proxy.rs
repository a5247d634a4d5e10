//! A fault-injecting HTTP proxy for the S3 tests: it listens on 127.0.0.1 and forwards each
//! request to the S3 server (moto) behind it, and can be told at run time to answer the next
//! N requests (optionally only those matching a method and a path substring) with an S3
//! error such as 500 `InternalError` or 503 `SlowDown`, to delay responses, to hang (accept
//! and never answer), or to be down (connections refused, those in flight cut). It counts the
//! requests it saw by method, so tests can prove that retries happened.
//!
//! One request per client connection: every response goes back with `Connection: close`
//! (moto's own responses carry it too), so the proxy never has to track where a response ends
//! on a connection that stays open. Request bodies are forwarded as they arrive, with either
//! `Content-Length` or chunked framing; an injected error first reads the whole body, so the
//! client sees a proper response, not a reset. `Expect: 100-continue` is answered by the proxy.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::s3::{Credentials, repository_yaml};

/// Which requests a rule applies to: both parts must match when given.
#[derive(Clone, Debug, Default)]
pub struct Match {
    /// The HTTP method, e.g. `PUT`.
    pub method: Option<String>,
    /// A substring of the request target (path and query), e.g. `/wal/` or `uploadId=`.
    pub path_contains: Option<String>,
}

impl Match {
    /// Every request.
    pub fn any() -> Match {
        Match::default()
    }

    /// Requests with this method.
    pub fn method(method: &str) -> Match {
        Match {
            method: Some(method.into()),
            path_contains: None,
        }
    }

    /// Requests whose target contains `part`.
    pub fn path(part: &str) -> Match {
        Match {
            method: None,
            path_contains: Some(part.into()),
        }
    }

    /// Requests with this method whose target contains `part`.
    pub fn method_path(method: &str, part: &str) -> Match {
        Match {
            method: Some(method.into()),
            path_contains: Some(part.into()),
        }
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| target.contains(p))
    }
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// The status the client got; 0 if it got none (cut, hung, upstream unreachable).
    pub status: u16,
    /// True if the proxy answered with an injected error.
    pub injected: bool,
}

struct FailRule {
    remaining: u32,
    status: u16,
    only: Match,
}

struct DelayRule {
    /// `None`: every matching request, until cleared.
    remaining: Option<u32>,
    delay: Duration,
    only: Match,
}

#[derive(Default)]
struct Rules {
    fail: Vec<FailRule>,
    delay: Vec<DelayRule>,
}

#[derive(Default)]
struct State {
    rules: Mutex<Rules>,
    seen: Mutex<Vec<Seen>>,
    /// Streams in flight (client and upstream sides), to cut them when an outage starts.
    active: Mutex<HashMap<u64, Vec<TcpStream>>>,
    next_id: AtomicU64,
    outage: AtomicBool,
    hang: AtomicBool,
    stop: AtomicBool,
}

/// Locks a mutex even if a proxy thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The proxy; its threads stop when it is dropped.
pub struct FaultProxy {
    port: u16,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on a free port of 127.0.0.1 forwarding to `upstream` (moto), passing
    /// everything through until told otherwise.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(State::default());
        let st = Arc::clone(&state);
        let accept = std::thread::Builder::new()
            .name("s3-fault-proxy".into())
            .spawn(move || accept_loop(listener, port, upstream, st))
            .expect("spawn the proxy's accept thread");
        FaultProxy {
            port,
            state,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `repository:` block of a dbagent config reaching `bucket`/`prefix` through this
    /// proxy (see [`repository_yaml`]).
    pub fn repository_yaml(&self, bucket: &str, prefix: &str) -> String {
        repository_yaml(&self.endpoint(), bucket, prefix, &Credentials::unchecked())
    }

    /// Answers the next `n` requests with `status` (500 `InternalError`, 503 `SlowDown`, 403
    /// `AccessDenied`, 404 `NoSuchKey`, else a generic error code).
    pub fn fail_next(&self, n: u32, status: u16) {
        self.fail_next_matching(n, status, Match::any());
    }

    /// Answers the next `n` requests that match `only` with `status`.
    pub fn fail_next_matching(&self, n: u32, status: u16, only: Match) {
        lock(&self.state.rules).fail.push(FailRule {
            remaining: n,
            status,
            only,
        });
    }

    /// Delays the response of every request matching `only` by `delay` (the request reaches
    /// the server at once; its answer comes late), until [`FaultProxy::clear`].
    pub fn delay(&self, delay: Duration, only: Match) {
        lock(&self.state.rules).delay.push(DelayRule {
            remaining: None,
            delay,
            only,
        });
    }

    /// Delays the responses of the next `n` requests matching `only` by `delay`.
    pub fn delay_next(&self, n: u32, delay: Duration, only: Match) {
        lock(&self.state.rules).delay.push(DelayRule {
            remaining: Some(n),
            delay,
            only,
        });
    }

    /// Removes every error and delay rule: pass everything through.
    pub fn clear(&self) {
        let mut rules = lock(&self.state.rules);
        rules.fail.clear();
        rules.delay.clear();
    }

    /// Errors still to be injected by the `fail_next` rules.
    pub fn pending_failures(&self) -> u32 {
        lock(&self.state.rules)
            .fail
            .iter()
            .map(|r| r.remaining)
            .sum()
    }

    /// Outage on: new connections are refused (the port is closed) and those in flight are
    /// cut. Off: the proxy listens on the same port again.
    pub fn outage(&self, on: bool) {
        self.state.outage.store(on, Ordering::SeqCst);
        if on {
            for (_, streams) in lock(&self.state.active).drain() {
                for s in streams {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
            // Wait until the listener is closed, so that the next connect is refused.
            for _ in 0..100 {
                if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("the proxy's port stayed open during an outage");
        } else {
            for _ in 0..250 {
                if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("the proxy did not listen again after an outage");
        }
    }

    /// Hang on: connections are accepted and requests read but never answered (until hang
    /// is switched off, when they are closed unanswered).
    pub fn hang(&self, on: bool) {
        self.state.hang.store(on, Ordering::SeqCst);
    }

    /// Every request seen so far, in order of arrival.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state.seen).clone()
    }

    /// How many requests with this method were seen (answered, injected or cut).
    pub fn count(&self, method: &str) -> usize {
        lock(&self.state.seen)
            .iter()
            .filter(|s| s.method.eq_ignore_ascii_case(method))
            .count()
    }

    /// How many requests were seen in all.
    pub fn total(&self) -> usize {
        lock(&self.state.seen).len()
    }

    /// How many errors were injected.
    pub fn injected(&self) -> usize {
        lock(&self.state.seen).iter().filter(|s| s.injected).count()
    }

    /// Forgets the requests seen so far.
    pub fn reset_seen(&self) {
        lock(&self.state.seen).clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.hang.store(false, Ordering::SeqCst);
        for (_, streams) in lock(&self.state.active).drain() {
            for s in streams {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections (polling, so that it can close and reopen the port for outages) and
/// serves each on its own thread.
fn accept_loop(listener: TcpListener, port: u16, upstream: SocketAddr, state: Arc<State>) {
    let mut listener = Some(listener);
    if let Some(l) = &listener {
        l.set_nonblocking(true).expect("non-blocking listener");
    }
    while !state.stop.load(Ordering::SeqCst) {
        if state.outage.load(Ordering::SeqCst) {
            // Closing the listener refuses new connections (and resets queued ones).
            listener = None;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let Some(l) = &listener else {
            // std sets SO_REUSEADDR, so the port can be bound again at once.
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => {
                    l.set_nonblocking(true).expect("non-blocking listener");
                    listener = Some(l);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
            continue;
        };
        match l.accept() {
            Ok((client, _)) => {
                let st = Arc::clone(&state);
                let _ = std::thread::Builder::new()
                    .name("s3-fault-proxy-conn".into())
                    .spawn(move || serve(client, upstream, st));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// A request head as read from the client.
struct Head {
    method: String,
    target: String,
    /// Header lines as received (name, value).
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn content_length(&self) -> u64 {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn serve(client: TcpStream, upstream: SocketAddr, state: Arc<State>) {
    let _ = client.set_nonblocking(false);
    let id = state.next_id.fetch_add(1, Ordering::SeqCst);
    if let Ok(c) = client.try_clone() {
        lock(&state.active).entry(id).or_default().push(c);
    }
    if state.outage.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Both);
    } else {
        let _ = serve_one(&client, upstream, &state, id);
    }
    lock(&state.active).remove(&id);
}

/// Reads one request, then injects an error, hangs, or forwards it and relays the response.
fn serve_one(
    client: &TcpStream,
    upstream: SocketAddr,
    state: &State,
    id: u64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client.try_clone()?;
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let seen_at = {
        let mut seen = lock(&state.seen);
        seen.push(Seen {
            method: head.method.clone(),
            target: head.target.clone(),
            status: 0,
            injected: false,
        });
        seen.len() - 1
    };
    let record = |status: u16, injected: bool| {
        if let Some(s) = lock(&state.seen).get_mut(seen_at) {
            s.status = status;
            s.injected = injected;
        }
    };
    let expect_continue = head
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expect_continue {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }

    if state.hang.load(Ordering::SeqCst) {
        while state.hang.load(Ordering::SeqCst) && !state.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }

    let (fail, delay) = {
        let mut rules = lock(&state.rules);
        let fail = rules
            .fail
            .iter_mut()
            .find(|r| r.remaining > 0 && r.only.matches(&head.method, &head.target))
            .map(|r| {
                r.remaining -= 1;
                r.status
            });
        rules.fail.retain(|r| r.remaining > 0);
        let delay = if fail.is_none() {
            let d = rules
                .delay
                .iter_mut()
                .find(|r| r.remaining != Some(0) && r.only.matches(&head.method, &head.target))
                .map(|r| {
                    if let Some(n) = r.remaining.as_mut() {
                        *n -= 1;
                    }
                    r.delay
                });
            rules.delay.retain(|r| r.remaining != Some(0));
            d
        } else {
            None
        };
        (fail, delay)
    };

    if let Some(status) = fail {
        copy_body(&mut reader, &head, None)?;
        writer.write_all(&error_response(status, head.method == "HEAD"))?;
        writer.flush()?;
        record(status, true);
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }

    let up = match TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) {
        Ok(up) => up,
        Err(_) => {
            // The server behind is down: what a load balancer says.
            copy_body(&mut reader, &head, None)?;
            writer.write_all(&error_response(502, head.method == "HEAD"))?;
            record(502, false);
            return Ok(());
        }
    };
    if let Ok(u) = up.try_clone() {
        lock(&state.active).entry(id).or_default().push(u);
    }
    if state.outage.load(Ordering::SeqCst) {
        return Ok(());
    }
    let mut up_writer = up.try_clone()?;
    let mut out = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
    for (k, v) in &head.headers {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("expect") {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    up_writer.write_all(out.as_bytes())?;
    copy_body(&mut reader, &head, Some(&mut up_writer))?;
    up_writer.flush()?;

    // The response: its head with `Connection: close`, then everything until the server
    // closes.
    let mut up_reader = BufReader::new(up);
    let mut status_line = String::new();
    up_reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut resp_head = status_line.clone();
    loop {
        let mut line = String::new();
        if up_reader.read_line(&mut line)? == 0 {
            break;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        if line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        resp_head.push_str(&line);
    }
    resp_head.push_str("Connection: close\r\n\r\n");
    if let Some(d) = delay {
        sleep_unless_cut(d, state);
        if state.outage.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
    writer.write_all(resp_head.as_bytes())?;
    std::io::copy(&mut up_reader, &mut writer)?;
    writer.flush()?;
    record(status, false);
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

fn sleep_unless_cut(d: Duration, state: &State) {
    let end = std::time::Instant::now() + d;
    while std::time::Instant::now() < end {
        if state.outage.load(Ordering::SeqCst) || state.stop.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads a request head; `None` if the client closed before sending one.
fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Head>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some(Head {
        method,
        target,
        headers,
    }))
}

/// Copies (or with `sink` `None`, discards) the request body, keeping its framing.
fn copy_body(
    reader: &mut BufReader<TcpStream>,
    head: &Head,
    mut sink: Option<&mut TcpStream>,
) -> std::io::Result<()> {
    let mut put = |bytes: &[u8]| -> std::io::Result<()> {
        match sink.as_deref_mut() {
            Some(s) => s.write_all(bytes),
            None => Ok(()),
        }
    };
    if head.chunked() {
        loop {
            let mut size_line = String::new();
            if reader.read_line(&mut size_line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            put(size_line.as_bytes())?;
            let size = u64::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = String::new();
                    if reader.read_line(&mut t)? == 0 {
                        return Ok(());
                    }
                    put(t.as_bytes())?;
                    if t == "\r\n" || t == "\n" {
                        return Ok(());
                    }
                }
            }
            copy_exact(reader, size + 2, &mut put)?;
        }
    } else {
        copy_exact(reader, head.content_length(), &mut put)
    }
}

fn copy_exact(
    reader: &mut BufReader<TcpStream>,
    mut n: u64,
    put: &mut impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    while n > 0 {
        let want = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        let got = reader.read(&mut buf[..want])?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        put(&buf[..got])?;
        n -= got as u64;
    }
    Ok(())
}

/// An S3-style XML error response with `Connection: close`.
fn error_response(status: u16, head_only: bool) -> Vec<u8> {
    let (reason, code, message) = match status {
        500 => (
            "Internal Server Error",
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        502 => (
            "Bad Gateway",
            "BadGateway",
            "The server behind the proxy is down.",
        ),
        503 => ("Slow Down", "SlowDown", "Please reduce your request rate."),
        403 => ("Forbidden", "AccessDenied", "Access Denied"),
        404 => (
            "Not Found",
            "NoSuchKey",
            "The specified key does not exist.",
        ),
        _ => (
            "Error",
            "InjectedError",
            "An error injected by the test proxy.",
        ),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>dbagent-it-proxy</RequestId></Error>"
    );
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amz-request-id: dbagent-it-proxy\r\nConnection: close\r\n\r\n",
        if head_only { 0 } else { body.len() }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// A moto server with `bucket`, and a fault proxy in front of it.
pub fn behind_proxy(bucket: &str) -> (super::s3::S3Server, FaultProxy) {
    let s3 = super::s3::S3Server::start();
    s3.create_bucket(bucket);
    let proxy = FaultProxy::start(s3.addr());
    (s3, proxy)
}

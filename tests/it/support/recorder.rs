//! An HTTP receiver on 127.0.0.1 that records what Slack, PagerDuty or a webhook would get,
//! and can be switched between being down (not listening: connection refused), answering
//! 500, answering 429 with Retry-After, and accepting. Every answer closes the connection, so
//! a switch takes effect at the next request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// How the recorder answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Not listening: connection refused.
    Refuse,
    /// Answers this status with a short body.
    Status(u16),
    /// 429 with this Retry-After value.
    TooMany { retry_after: String },
    /// Accepts (the status given at start, 200 or 202).
    Accept,
}

/// One request received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
    /// The status it was answered with.
    pub answered: u16,
}

struct Inner {
    mode: Mode,
    accept_status: u16,
    accept_body: String,
    requests: Vec<Recorded>,
}

pub struct Recorder {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Recorder {
    /// Starts accepting with `accept_status` and `accept_body` (Slack: 200 `ok`; PagerDuty:
    /// 202 with a JSON body).
    pub async fn start(accept_status: u16, accept_body: &str) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("addr");
        let rec = Recorder {
            addr,
            inner: Arc::new(Mutex::new(Inner {
                mode: Mode::Accept,
                accept_status,
                accept_body: accept_body.to_string(),
                requests: Vec::new(),
            })),
            server: Mutex::new(None),
        };
        rec.serve(listener);
        rec
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let inner = Arc::clone(&self.inner);
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let inner = Arc::clone(&inner);
                async move { answer(&inner, method, uri, headers, body) }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.server.lock().unwrap() = Some(task);
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Switches how it answers from the next request on.
    pub async fn set(&self, mode: Mode) {
        let listening = self.server.lock().unwrap().is_some();
        if mode == Mode::Refuse {
            if let Some(task) = self.server.lock().unwrap().take() {
                task.abort();
            }
        } else if !listening {
            let deadline = Instant::now() + Duration::from_secs(10);
            let listener = loop {
                match tokio::net::TcpListener::bind(self.addr).await {
                    Ok(l) => break l,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
                }
            };
            // The new mode before the first request: in Refuse mode a request is accepted.
            self.inner.lock().unwrap().mode = mode.clone();
            self.serve(listener);
        }
        // Let an aborted server task finish dropping its listener.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.inner.lock().unwrap().mode = mode;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The requests it accepted (answered 2xx), in order.
    pub fn accepted(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    /// Waits until it has accepted `n` requests; panics after `timeout`.
    pub async fn wait_accepted(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.accepted();
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "the recorder accepted {} of {n} requests in {timeout:?}; all requests: {:#?}",
                    got.len(),
                    self.requests()
                        .iter()
                        .map(|r| (r.answered, r.body.to_string()))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(task) = self.server.lock().unwrap().take() {
            task.abort();
        }
    }
}

fn answer(
    inner: &Mutex<Inner>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut g = inner.lock().unwrap();
    let (status, retry_after, text) = match &g.mode {
        Mode::Refuse | Mode::Accept => (g.accept_status, None, g.accept_body.clone()),
        Mode::Status(s) => (*s, None, "recorder says no".to_string()),
        Mode::TooMany { retry_after } => (429, Some(retry_after.clone()), "rate_limited".into()),
    };
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()));
    g.requests.push(Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers,
        body,
        answered: status,
    });
    let mut resp = (StatusCode::from_u16(status).expect("status"), text).into_response();
    resp.headers_mut()
        .insert("connection", "close".parse().expect("header"));
    if let Some(ra) = retry_after {
        resp.headers_mut()
            .insert("retry-after", ra.parse().expect("retry-after"));
    }
    resp
}

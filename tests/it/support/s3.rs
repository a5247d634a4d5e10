//! A real S3-compatible server for the tests of the S3 repository: moto in server mode
//! (`moto_server`, from PyPI's `moto[server]`, installed by scripts/lib/deps.sh), started on
//! 127.0.0.1 and a free port as a child process, killed (by its PID) when dropped.
//!
//! Why moto: it runs offline, keeps everything in memory, and speaks enough of S3 for
//! dbagent: path-style requests, ListObjectsV2, multipart uploads, conditional writes
//! (`If-None-Match: *` answers 412, `If-Match`), and, with authentication switched on, real
//! SigV4 checks against IAM users created in it. Its limits, as seen by these tests:
//! - it keeps no state across a restart: [`S3Server::stop`] then [`S3Server::start_again`]
//!   gives an empty server on the same port. An outage that a client should survive is
//!   therefore simulated by the fault proxy (support/s3proxy.rs) in front of it, not by
//!   stopping moto;
//! - with authentication off (the default here) it accepts any access key, but it still
//!   treats a request without an `Authorization` header as anonymous and refuses object
//!   reads and deletes (403). The helpers here send a well-formed but unchecked SigV4
//!   header, which is enough while authentication is off;
//! - authentication is on only when started with [`S3Server::start_with_auth`]
//!   (`INITIAL_NO_AUTH_ACTION_COUNT`): the IAM user, its key and the buckets are then created
//!   with boto3 (which comes with moto), because the helpers here do not sign requests;
//! - bucket names follow S3's rules (3 to 63 characters), so `b1` is refused.
//!
//! The helpers talk plain HTTP/1.1 over a `TcpStream`, one request per connection (moto's
//! Werkzeug server closes every connection anyway), so that the kit needs no S3 client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key the tests give dbagent for a server without authentication (any key works).
pub const ACCESS_KEY_ID: &str = "AKIADBAGENTIT0000001";
/// Its secret.
pub const SECRET_ACCESS_KEY: &str = "dbagent-it-secret-key-not-checked-by-moto";
/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// How long to wait for moto to answer after starting it.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// An access key pair.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Credentials {
    /// The pair the tests use against a server without authentication.
    pub fn unchecked() -> Credentials {
        Credentials {
            access_key_id: ACCESS_KEY_ID.into(),
            secret_access_key: SECRET_ACCESS_KEY.into(),
        }
    }
}

/// A running moto server; killed when dropped.
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    /// Extra environment of the server (authentication settings).
    env: Vec<(String, String)>,
    /// Holds moto's log (one line per request), for failure messages.
    dir: tempfile::TempDir,
}

/// One HTTP response as the kit's client read it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl S3Server {
    /// Starts moto without authentication on a free port and waits until it answers.
    pub fn start() -> S3Server {
        S3Server::start_env(Vec::new())
    }

    /// Starts moto with authentication on: an IAM user with an allow-all policy and an access
    /// key are created (the first three actions, before authentication applies), then
    /// `buckets` with that key. Returns the server and the valid key; any other key is
    /// refused with `InvalidAccessKeyId`, a wrong secret with `SignatureDoesNotMatch`.
    pub fn start_with_auth(buckets: &[&str]) -> (S3Server, Credentials) {
        let server = S3Server::start_env(vec![("INITIAL_NO_AUTH_ACTION_COUNT".into(), "3".into())]);
        let script = r#"
import json, sys, boto3
endpoint, buckets = sys.argv[1], sys.argv[2:]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="dbagent-it")
iam.put_user_policy(UserName="dbagent-it", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="dbagent-it")["AccessKey"]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"],
                  aws_secret_access_key=key["SecretAccessKey"])
for b in buckets:
    s3.create_bucket(Bucket=b)
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
        let out = Command::new(moto_python())
            .arg("-c")
            .arg(script)
            .arg(server.endpoint())
            .args(buckets)
            .output()
            .expect("run python3 (boto3) to set up moto's IAM user");
        assert!(
            out.status.success(),
            "setting up moto's IAM user failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        let creds = Credentials {
            access_key_id: words.next().expect("access key id").into(),
            secret_access_key: words.next().expect("secret access key").into(),
        };
        (server, creds)
    }

    fn start_env(env: Vec<(String, String)>) -> S3Server {
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("dbagent-s3-")
                .tempdir_in("/tmp")
                .expect("create moto's scratch dir");
            let mut server = S3Server {
                child: None,
                port: free_port(),
                env: env.clone(),
                dir,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("moto did not start: {last}");
    }

    /// Starts moto on `self.port` and waits until it answers; an error (with moto's log) if
    /// it exits or never answers.
    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open moto's log");
        let mut cmd = moto_command();
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .current_dir(self.dir.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot run moto_server ({e}); install it with `python3 -m pip install \
                 'moto[server]==5.2.6'` (scripts/test.sh installs it into {MOTO_VENV}), or \
                 point DBAGENT_MOTO_SERVER at it"
            )
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("moto exited ({status}); log:\n{}", self.log()));
            }
            if let Ok(r) = request(self.addr(), "GET", "/moto-api/", &[], b"")
                && r.status == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "moto did not answer on port {} within {START_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("moto.log")
    }

    /// The end of moto's log.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Only our own child, by its PID.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (SIGKILL: everything it held is gone).
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port: an empty server (moto keeps no state).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.spawn()
            .unwrap_or_else(|e| panic!("moto did not start again: {e}"));
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One request with an (unchecked) SigV4 header; panics if the server cannot be reached.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Response {
        request(self.addr(), method, path, &auth_headers(), body)
            .unwrap_or_else(|e| panic!("{method} {path} to moto: {e}\nlog:\n{}", self.log()))
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        let r = self.request("PUT", &format!("/{bucket}"), b"");
        assert_eq!(r.status, 200, "create bucket {bucket}: {}", r.text());
    }

    /// Every key in `bucket` that starts with `prefix`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2&prefix={}", encode(prefix, true));
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={}", encode(t, true)));
            }
            let r = self.request("GET", &path, b"");
            assert_eq!(r.status, 200, "list {bucket}/{prefix}: {}", r.text());
            let text = r.text();
            keys.extend(xml_values(&text, "Key"));
            token = xml_values(&text, "NextContinuationToken")
                .into_iter()
                .next();
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// The keys of the multipart uploads in progress (started, neither completed nor
    /// aborted) in `bucket`.
    pub fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let r = self.request("GET", &format!("/{bucket}?uploads"), b"");
        assert_eq!(
            r.status,
            200,
            "list multipart uploads of {bucket}: {}",
            r.text()
        );
        let text = r.text();
        let mut keys = Vec::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("<Upload>") {
            rest = &rest[start..];
            let end = rest.find("</Upload>").unwrap_or(rest.len());
            keys.extend(xml_values(&rest[..end], "Key"));
            rest = &rest[end..];
        }
        keys
    }

    /// The bytes of object `key`, `None` if there is no such object.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let r = self.request("GET", &object_path(bucket, key), b"");
        match r.status {
            200 => Some(r.body),
            404 => None,
            s => panic!("get {bucket}/{key}: {s} {}", r.text()),
        }
    }

    /// Writes object `key` (replacing it): how a test damages an object.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let r = self.request("PUT", &object_path(bucket, key), bytes);
        assert_eq!(r.status, 200, "put {bucket}/{key}: {}", r.text());
    }

    /// Deletes object `key`.
    pub fn delete(&self, bucket: &str, key: &str) {
        let r = self.request("DELETE", &object_path(bucket, key), b"");
        assert!(
            r.status == 204 || r.status == 200,
            "delete {bucket}/{key}: {} {}",
            r.status,
            r.text()
        );
    }

    /// The `repository:` block of a dbagent config for `bucket`/`prefix` on this server, with
    /// the unchecked key pair.
    pub fn repository_yaml(&self, bucket: &str, prefix: &str) -> String {
        repository_yaml(&self.endpoint(), bucket, prefix, &Credentials::unchecked())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `repository:` block of a dbagent config (type s3, path-style, explicit endpoint and
/// keys, region us-east-1), to which a test may append more indented `  key: value` lines.
pub fn repository_yaml(endpoint: &str, bucket: &str, prefix: &str, creds: &Credentials) -> String {
    let mut yaml = format!(
        "repository:\n  type: s3\n  bucket: {bucket}\n  region: {REGION}\n  endpoint: {endpoint}\n  force_path_style: true\n  access_key_id: \"{}\"\n  secret_access_key: \"{}\"\n",
        creds.access_key_id, creds.secret_access_key
    );
    if !prefix.is_empty() {
        yaml.push_str(&format!("  prefix: {prefix}\n"));
    }
    yaml
}

/// Where scripts/lib/deps.sh installs moto (the version the tests are known to pass with).
const MOTO_VENV: &str = "/opt/dbagent/moto-5.2.6";

/// The `moto_server` program: `$DBAGENT_MOTO_SERVER`, else the one scripts/lib/deps.sh
/// installs, else one on PATH (another moto version: a machine's own moto 5.2.1 rejected
/// correctly signed requests); `None` if there is none (then `python3 -m moto.server`).
fn moto_server_program() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DBAGENT_MOTO_SERVER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let pinned = Path::new(MOTO_VENV).join("bin/moto_server");
    if is_executable(&pinned) {
        return Some(pinned);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("moto_server"))
            .find(|p| is_executable(p))
    })
}

/// How to run moto (see [`moto_server_program`]).
fn moto_command() -> Command {
    match moto_server_program() {
        Some(p) => Command::new(p),
        None => {
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "moto.server"]);
            cmd
        }
    }
}

/// The Python that has moto's packages (boto3 comes with moto): the interpreter beside a
/// `moto_server` in a virtual environment, else `python3`.
fn moto_python() -> PathBuf {
    moto_server_program()
        .and_then(|p| p.parent().map(|d| d.join("python")))
        .filter(|p| is_executable(p))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

/// An `Authorization` header moto accepts while authentication is off (it is not checked).
pub fn auth_headers() -> Vec<(String, String)> {
    let date = "20260101";
    vec![
        (
            "Authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{date}/{REGION}/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000"
            ),
        ),
        ("x-amz-date".into(), format!("{date}T000000Z")),
        ("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into()),
    ]
}

/// `/bucket/key` with the key percent-encoded (slashes kept).
pub fn object_path(bucket: &str, key: &str) -> String {
    format!("/{bucket}/{}", encode(key, false))
}

/// Percent-encodes all but unreserved characters (and `/` unless `slash`).
fn encode(s: &str, slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The text of every `<tag>...</tag>` in `xml`, entities decoded.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        out.push(
            rest[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[end + close.len()..];
    }
    out
}

/// One HTTP/1.1 request to `addr` on its own connection (`Connection: close`); reads the
/// whole response. A chunked response body is decoded.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/octet-stream\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head_only: bool) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of response head"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty response"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if head_only {
        body.clear();
    } else if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

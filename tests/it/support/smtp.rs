//! A real SMTP server for the email receiver's tests: aiosmtpd (Debian's python3-aiosmtpd,
//! installed by scripts/lib/deps.sh) on a free loopback port, storing what it receives in a
//! Maildir; messages are read back with Python's own email parser. It can offer STARTTLS or
//! implicit TLS with a certificate from a throwaway CA made with openssl.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// A running aiosmtpd.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// One received message as Python's email parser sees it.
#[derive(Debug, Deserialize)]
pub struct Mail {
    pub subject: String,
    pub from: String,
    pub to: String,
    /// The envelope recipients (aiosmtpd's X-RcptTo header).
    pub rcpt_to: String,
    pub content_type: String,
    /// (content type, decoded text) of every leaf part.
    pub parts: Vec<(String, String)>,
}

/// The Python that has aiosmtpd (Debian's, when another python3 comes first in PATH).
fn python() -> &'static str {
    for p in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return p;
        }
    }
    panic!(
        "aiosmtpd is missing: install Debian's python3-aiosmtpd (scripts/lib/deps.sh install_test_deps)"
    );
}

/// How the server secures connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP, no STARTTLS offered.
    None,
    /// Plain SMTP that requires AUTH with this user and password (allowed without TLS: loopback).
    Auth(&'static str, &'static str),
    /// STARTTLS offered and required before MAIL.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        SmtpServer::start_with(SmtpTls::None)
    }

    /// The CA certificate (PEM) that signed the server's certificate (for localhost and
    /// 127.0.0.1); only for servers started with TLS.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn start_with(tls: SmtpTls) -> SmtpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let maildir = dir.path().join("maildir");
        let mut tls_args: Vec<String> = Vec::new();
        if matches!(tls, SmtpTls::Starttls | SmtpTls::Implicit) {
            make_certificates(dir.path());
            let (c, k) = if tls == SmtpTls::Starttls {
                ("--tlscert", "--tlskey")
            } else {
                ("--smtpscert", "--smtpskey")
            };
            for (flag, file) in [(c, "cert.pem"), (k, "key.pem")] {
                tls_args.push(flag.to_string());
                tls_args.push(dir.path().join(file).display().to_string());
            }
        }
        let mut cmd = Command::new(python());
        if let SmtpTls::Auth(user, password) = tls {
            cmd.args(["-c", AUTH_SERVER])
                .arg(port.to_string())
                .arg(&maildir)
                .args([user, password]);
        } else {
            cmd.args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(&tls_args)
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(&maildir);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let mut server = SmtpServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("aiosmtpd exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "aiosmtpd did not listen in 20s");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(self.maildir().join("new"))
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Waits until `n` messages arrived; returns them parsed.
    pub fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = Instant::now() + timeout;
        loop {
            let files = self.files();
            if files.len() >= n {
                return files.iter().map(|f| parse(f)).collect();
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} messages arrived in {timeout:?}",
                files.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for localhost/127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=dbagent test CA",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// aiosmtpd with an authenticator, which its command line cannot set up.
const AUTH_SERVER: &str = r#"
import sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
port, maildir, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode(), sys.argv[4].encode()
def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user and data.password == password
    return AuthResult(success=ok, handled=False)
Controller(Mailbox(maildir), hostname='127.0.0.1', port=port, authenticator=check,
           auth_required=True, auth_require_tls=False).start()
while True:
    time.sleep(3600)
"#;

const PARSE: &str = r#"
import email, email.policy, json, sys
with open(sys.argv[1], 'rb') as f:
    m = email.message_from_binary_file(f, policy=email.policy.default)
parts = [(p.get_content_type(), p.get_content()) for p in m.walk() if not p.is_multipart()]
print(json.dumps({
    'subject': str(m['Subject']), 'from': str(m['From']), 'to': str(m['To']),
    'rcpt_to': str(m['X-RcptTo']), 'content_type': m.get_content_type(), 'parts': parts,
}))
"#;

fn parse(file: &Path) -> Mail {
    let out = Command::new(python())
        .args(["-c", PARSE])
        .arg(file)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "cannot parse {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parsed mail JSON")
}

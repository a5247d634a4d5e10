//! The S3 repository (issue 15) against a real S3-compatible server, moto, started by the kit
//! on 127.0.0.1 (support/s3.rs), with a fault-injecting proxy in front where a test needs
//! faults (support/s3proxy.rs), on PostgreSQL 15 and 18: the whole backup / wal-push /
//! wal-get / restore / drill / verify / expire cycle, point-in-time restore by every target
//! kind, outages during a backup and during wal-push, injected 500/503 and slow responses,
//! wrong credentials, a missing bucket, damaged objects, and two agents sharing one bucket.
//!
//! The `kit` tests check the server and the proxy themselves, without dbagent.

mod kit {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use crate::support::s3::{S3Server, auth_headers, object_path, request};
    use crate::support::s3proxy::{FaultProxy, Match};

    #[test]
    fn moto_stores_lists_overwrites_and_deletes_objects() {
        let mut s3 = S3Server::start();
        s3.create_bucket("kit-bucket");
        s3.put("kit-bucket", "p/a/one", b"first");
        s3.put("kit-bucket", "p/b/two", b"second");
        s3.put("kit-bucket", "q/three", b"third");
        assert_eq!(s3.keys("kit-bucket", "p/"), vec!["p/a/one", "p/b/two"]);
        assert_eq!(
            s3.get("kit-bucket", "p/a/one").as_deref(),
            Some(&b"first"[..])
        );
        s3.put("kit-bucket", "p/a/one", b"damaged");
        assert_eq!(
            s3.get("kit-bucket", "p/a/one").as_deref(),
            Some(&b"damaged"[..])
        );
        s3.delete("kit-bucket", "p/a/one");
        assert_eq!(s3.get("kit-bucket", "p/a/one"), None);
        assert_eq!(s3.keys("kit-bucket", ""), vec!["p/b/two", "q/three"]);

        // A restarted moto is empty, on the same port.
        let port = s3.port();
        s3.stop();
        assert!(TcpStream::connect(s3.addr()).is_err());
        s3.start_again();
        assert_eq!(s3.port(), port);
        let r = s3.request("GET", "/kit-bucket?list-type=2", b"");
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(r.text().contains("NoSuchBucket"), "{}", r.text());
    }

    #[test]
    fn moto_conditional_put_refuses_to_overwrite() {
        let s3 = S3Server::start();
        s3.create_bucket("kit-cond");
        let mut h = auth_headers();
        h.push(("If-None-Match".into(), "*".into()));
        let path = object_path("kit-cond", "k");
        let first = request(s3.addr(), "PUT", &path, &h, b"one").unwrap();
        assert_eq!(first.status, 200, "{}", first.text());
        let second = request(s3.addr(), "PUT", &path, &h, b"two").unwrap();
        assert_eq!(second.status, 412, "{}", second.text());
        assert_eq!(s3.get("kit-cond", "k").as_deref(), Some(&b"one"[..]));
    }

    #[test]
    fn moto_with_auth_refuses_unknown_keys() {
        let (s3, creds) = S3Server::start_with_auth(&["kit-auth"]);
        assert!(creds.access_key_id.starts_with("AKIA"), "{creds:?}");
        // The kit's unsigned helpers use a key moto does not know.
        let r = request(
            s3.addr(),
            "GET",
            "/kit-auth?list-type=2",
            &auth_headers(),
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(r.text().contains("InvalidAccessKeyId"), "{}", r.text());
    }

    #[test]
    fn proxy_passes_through_and_counts_by_method() {
        let s3 = S3Server::start();
        s3.create_bucket("kit-proxy");
        let proxy = FaultProxy::start(s3.addr());
        let h = auth_headers();
        let put = request(proxy.addr(), "PUT", "/kit-proxy/x", &h, b"hello").unwrap();
        assert_eq!(put.status, 200, "{}", put.text());
        let get = request(proxy.addr(), "GET", "/kit-proxy/x", &h, b"").unwrap();
        assert_eq!(get.status, 200);
        assert_eq!(get.body, b"hello");
        assert_eq!(get.header("Connection"), Some("close"));
        let head = request(proxy.addr(), "HEAD", "/kit-proxy/x", &h, b"").unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(proxy.count("PUT"), 1);
        assert_eq!(proxy.count("GET"), 1);
        assert_eq!(proxy.count("HEAD"), 1);
        assert_eq!(proxy.injected(), 0);
        let seen = proxy.seen();
        assert_eq!(seen[1].target, "/kit-proxy/x");
        assert_eq!(seen[1].status, 200);
    }

    #[test]
    fn proxy_forwards_chunked_bodies_and_answers_expect_continue() {
        let s3 = S3Server::start();
        s3.create_bucket("kit-chunked");
        let proxy = FaultProxy::start(s3.addr());
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut head = String::from("PUT /kit-chunked/c HTTP/1.1\r\nHost: x\r\n");
        for (k, v) in auth_headers() {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(
            "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        );
        c.write_all(head.as_bytes()).unwrap();
        let mut interim = [0u8; 25];
        c.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        c.write_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert_eq!(
            s3.get("kit-chunked", "c").as_deref(),
            Some(&b"hello world"[..])
        );
    }

    #[test]
    fn proxy_injects_errors_on_matching_requests_then_passes_through() {
        let s3 = S3Server::start();
        s3.create_bucket("kit-faults");
        let proxy = FaultProxy::start(s3.addr());
        let h = auth_headers();
        proxy.fail_next_matching(2, 503, Match::method_path("PUT", "/wal/"));
        proxy.fail_next(1, 500);
        // The first request (a GET) takes the any-request rule.
        let get = request(proxy.addr(), "GET", "/kit-faults?list-type=2", &h, b"").unwrap();
        assert_eq!(get.status, 500);
        assert!(
            get.text().contains("<Code>InternalError</Code>"),
            "{}",
            get.text()
        );
        let other = request(proxy.addr(), "PUT", "/kit-faults/base/x", &h, b"1").unwrap();
        assert_eq!(other.status, 200, "not matching: passed through");
        for _ in 0..2 {
            let r = request(
                proxy.addr(),
                "PUT",
                "/kit-faults/wal/s",
                &h,
                &[7u8; 100_000],
            )
            .unwrap();
            assert_eq!(r.status, 503);
            assert!(r.text().contains("<Code>SlowDown</Code>"), "{}", r.text());
        }
        assert_eq!(
            s3.get("kit-faults", "wal/s"),
            None,
            "an injected error stores nothing"
        );
        let r = request(proxy.addr(), "PUT", "/kit-faults/wal/s", &h, b"ok").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(proxy.injected(), 3);
        assert_eq!(proxy.pending_failures(), 0);
        assert_eq!(proxy.count("PUT"), 4);
        // A HEAD error has no body but a proper head.
        proxy.fail_next(1, 503);
        let head = request(proxy.addr(), "HEAD", "/kit-faults/wal/s", &h, b"").unwrap();
        assert_eq!(head.status, 503);
    }

    #[test]
    fn proxy_delays_responses_and_hangs() {
        let s3 = S3Server::start();
        s3.create_bucket("kit-slow");
        let proxy = FaultProxy::start(s3.addr());
        let h = auth_headers();
        proxy.delay_next(1, Duration::from_millis(800), Match::method("GET"));
        let t = Instant::now();
        let r = request(proxy.addr(), "GET", "/kit-slow?list-type=2", &h, b"").unwrap();
        assert_eq!(r.status, 200);
        assert!(
            t.elapsed() >= Duration::from_millis(800),
            "{:?}",
            t.elapsed()
        );
        let t = Instant::now();
        request(proxy.addr(), "GET", "/kit-slow?list-type=2", &h, b"").unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(800),
            "only the next one"
        );

        proxy.hang(true);
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        c.write_all(b"GET /kit-slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 16];
        let err = c.read(&mut buf).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err}"
        );
        proxy.hang(false);
        let r = request(proxy.addr(), "GET", "/kit-slow?list-type=2", &h, b"").unwrap();
        assert_eq!(r.status, 200);
    }

    #[test]
    fn proxy_outage_refuses_connections_cuts_those_in_flight_then_recovers() {
        let s3 = S3Server::start();
        s3.create_bucket("kit-outage");
        let proxy = FaultProxy::start(s3.addr());
        let h = auth_headers();
        // A request in flight (its answer delayed) is cut by the outage.
        proxy.delay(Duration::from_secs(10), Match::any());
        let addr = proxy.addr();
        let hh = h.clone();
        let in_flight =
            std::thread::spawn(move || request(addr, "GET", "/kit-outage?list-type=2", &hh, b""));
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        proxy.outage(true);
        let cut = in_flight.join().unwrap();
        assert!(cut.is_err(), "{cut:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        let refused = TcpStream::connect(proxy.addr()).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        proxy.clear();
        proxy.outage(false);
        let r = request(proxy.addr(), "GET", "/kit-outage?list-type=2", &h, b"").unwrap();
        assert_eq!(r.status, 200);

        // The server behind stopped: the proxy says 502.
        drop(s3);
        let r = request(proxy.addr(), "GET", "/kit-outage?list-type=2", &h, b"").unwrap();
        assert_eq!(r.status, 502);
    }
}

#!/usr/bin/env python3
"""scripts/lib/webhook-receiver.py: the quickstart sandbox's alert receiver.

A small local HTTP server (Python standard library only) standing in for Alertmanager, a chat
bridge or a ticketing system: dbagent's `webhook` receiver POSTs Alertmanager webhook JSON
(version 4) to it, and it appends every POST body, as one line of JSON, to a log file, so that
`tail -f sandbox/alerts.log` shows alerts firing and resolving.

    webhook-receiver.py --port 9099 --log sandbox/alerts.log --pidfile sandbox/webhook.pid

It listens on 127.0.0.1 only, writes its own PID to --pidfile (scripts/quickstart.sh --stop
ends it by that PID) and answers every POST with 200.
"""

import argparse
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--log", required=True, help="file every POST body is appended to")
    parser.add_argument("--pidfile", help="file to write this process's PID to")
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            try:
                line = json.dumps(json.loads(body), separators=(",", ":"))
            except ValueError:
                line = json.dumps({"path": self.path, "raw": body.decode("utf-8", "replace")})
            with open(args.log, "a", encoding="utf-8") as log:
                log.write(line + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            # A liveness answer, so that a script can wait for the receiver.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"dbagent quickstart webhook receiver\n")

        def log_message(self, format: str, *fmt_args) -> None:  # noqa: A002
            pass  # the alerts.log lines are the record; no access log on stderr

    try:
        server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    except OSError as e:
        print(f"webhook receiver: cannot listen on 127.0.0.1:{args.port}: {e.strerror}; "
              "set SANDBOX_HOOK_PORT to a free port", file=sys.stderr)
        return 1
    if args.pidfile:
        with open(args.pidfile, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"webhook receiver: listening on http://127.0.0.1:{args.port}/hook, "
          f"appending alerts to {args.log}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

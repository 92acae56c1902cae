"""An HTTP proxy in front of the loopback S3 server that fails a share of the requests: 500
InternalError, 503 SlowDown, a response that never comes (the client's read timeout), and uploads
cut short on their way to the server (which stores the truncated object and answers 200 OK).

Faults are drawn from a seeded generator (or follow a script) and counted by kind. `read_only_buckets` answer every
write with 403 AccessDenied, as a bucket the credentials may only read.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ERROR_BODY = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
KINDS = ("500", "503", "timeout", "truncated_upload")


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        rate: float,
        seed: int,
        hang_s: float = 3.0,
        read_only_buckets: tuple[str, ...] = (),
        script: tuple[str | None, ...] = (),
    ):
        self.upstream = urlsplit(upstream)
        self.rate = rate
        self.rng = random.Random(seed)
        self.hang_s = hang_s
        self.read_only_buckets = read_only_buckets
        self.script = list(script)  # the faults (None: none) of the next uploads, in order, before any drawn
        self.faults: Counter[str] = Counter()
        self.requests = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _draw(self, has_body: bool) -> str | None:
        with self._lock:
            self.requests += 1
            if self.script and has_body:
                kind = self.script.pop(0)
            elif self.rate <= 0 or self.rng.random() >= self.rate:
                return None
            else:  # an upload is cut short as often as it meets any of the other faults
                kind = "truncated_upload" if has_body and self.rng.random() < 0.5 else self.rng.choice(KINDS[:3])
            if kind is None:
                return None
            self.faults[kind] += 1
            return kind

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                upstream_length = dict((n.lower(), v) for n, v in headers).get("content-length")
                # a HEAD answer's length is the object's, not that of the (empty) body
                self.send_header(
                    "Content-Length", upstream_length if self.command == "HEAD" and upstream_length else str(len(body))
                )
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str) -> None:
                self._send(
                    status,
                    ERROR_BODY.format(code=code, message=message).encode(),
                    [("Content-Type", "application/xml")],
                )

            def _proxy(self) -> None:
                body = self._body()
                writes = self.command in ("PUT", "POST", "DELETE")
                if writes and self.path.lstrip("/").split("/")[0].split("?")[0] in proxy.read_only_buckets:
                    return self._error(403, "AccessDenied", "Access Denied")
                kind = proxy._draw(self.command == "PUT" and len(body) > 1)
                if kind == "500":
                    return self._error(500, "InternalError", "We encountered an internal error. Please try again.")
                if kind == "503":
                    return self._error(503, "SlowDown", "Please reduce your request rate.")
                if kind == "timeout":
                    time.sleep(proxy.hang_s)
                    self.close_connection = True
                    return None
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in ("host", "content-length", "connection")
                }
                if kind == "truncated_upload":
                    body = body[: len(body) // 2]
                connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                try:
                    connection.request(
                        self.command, self.path, body=body, headers={**headers, "Content-Length": str(len(body))}
                    )
                    response = connection.getresponse()
                    payload = response.read()
                    self._send(response.status, payload, response.getheaders())
                finally:
                    connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy

        return Handler

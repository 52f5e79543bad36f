"""A fault-injecting HTTP proxy for S3 tests: placed between pdgen and the local S3 endpoint, it
forwards every request and, with configured probabilities, answers ``503 SlowDown`` (with S3's
XML error body), resets the connection before the request reaches S3, resets it after S3 has
acted on the request (the response is lost), cuts a response mid-body (status and headers, half
the body, then a reset), or adds latency.

Decisions are deterministic for a seed: the n-th request for one (method, path) gets the same fault
in every run, whatever the thread interleaving. A path regex limits faults to some keys (e.g. the
Delta log) and every injected fault is counted.

Like ``s3server.py`` it runs in its own process: delta-rs holds the GIL while it waits on HTTP,
so a proxy thread inside the caller's process would deadlock against it. Control (stats,
reconfiguration) goes through ``/__faults__/...`` paths, which no S3 bucket name can take
(bucket names have no underscores).

``python -m pdgen_core.testing.faults --upstream http://127.0.0.1:9000 --p503 0.1`` runs one in the
foreground and prints its endpoint.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import struct
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from pdgen_core.testing.child import Child, free_port

CONTROL = "/__faults__"
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
        "upgrade", "expect"}
SLOWDOWN_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    "<Message>Please reduce your request rate.</Message><Resource>{resource}</Resource>"
    "<RequestId>{rid}</RequestId><HostId>pdgen-faults</HostId></Error>"
)


@dataclass
class FaultConfig:
    """Probabilities are per request and exclusive, drawn in this order: 503, reset before,
    reset after (response lost); latency is drawn independently and adds to any of them."""

    p503: float = 0.0
    p_reset: float = 0.0
    p_lost_response: float = 0.0
    p_cut_body: float = 0.0     # S3 answers, the connection drops halfway through the body
    p_latency: float = 0.0
    latency_s: float = 0.2
    seed: int = 0
    path_regex: str = ""        # only paths matching it get faults ("" = every path)
    methods: tuple[str, ...] = ()  # only these methods get faults (() = every method)
    max_per_key: int = 0        # faults only for the first N requests of a (method, path); 0: all

    def __post_init__(self) -> None:
        for f in ("p503", "p_reset", "p_lost_response", "p_cut_body", "p_latency"):
            v = getattr(self, f)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{f}={v} is not a probability in [0, 1]")
        if self.p503 + self.p_reset + self.p_lost_response + self.p_cut_body > 1.0:
            raise ValueError("p503 + p_reset + p_lost_response + p_cut_body must be at most 1")
        self.methods = tuple(m.upper() for m in self.methods)

    @classmethod
    def from_dict(cls, d: dict) -> "FaultConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if k == "methods" else v for k, v in d.items()})


@dataclass
class Stats:
    requests: int = 0
    forwarded: int = 0
    slowdown: int = 0
    reset: int = 0
    lost_response: int = 0
    cut_body: int = 0
    latency: int = 0
    by_method: dict[str, int] = field(default_factory=dict)

    @property
    def injected(self) -> int:
        return self.slowdown + self.reset + self.lost_response + self.cut_body


def _draw(seed: int, method: str, path: str, nth: int) -> tuple[float, float]:
    """Two uniform numbers in [0, 1) for the nth request of (method, path)."""
    h = hashlib.blake2b(f"{seed}|{method}|{path}|{nth}".encode(), digest_size=16).digest()
    a, b = struct.unpack(">QQ", h)
    return a / 2**64, b / 2**64


class _State:
    def __init__(self, upstream: str, config: FaultConfig):
        u = urlsplit(upstream)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"upstream {upstream!r}: expected http://host:port")
        self.host, self.port = u.hostname, u.port or 80
        self.lock = threading.Lock()
        self.config = config
        self.regex = re.compile(config.path_regex) if config.path_regex else None
        self.stats = Stats()
        self.seen: dict[tuple[str, str], int] = {}

    def configure(self, config: FaultConfig) -> None:
        with self.lock:
            self.config = config
            self.regex = re.compile(config.path_regex) if config.path_regex else None
            self.seen.clear()

    def decide(self, method: str, path: str) -> tuple[str, bool, float]:
        """(action, delayed, latency_s); action is forward | slowdown | reset | lost_response |
        cut_body."""
        with self.lock:
            c = self.config
            self.stats.requests += 1
            self.stats.by_method[method] = self.stats.by_method.get(method, 0) + 1
            eligible = (not c.methods or method in c.methods) and (
                self.regex is None or self.regex.search(path) is not None)
            if not eligible:
                return "forward", False, 0.0
            key = (method, path)
            nth = self.seen.get(key, 0)
            self.seen[key] = nth + 1
            if c.max_per_key and nth >= c.max_per_key:
                return "forward", False, 0.0
            u, v = _draw(c.seed, method, path, nth)
            delayed = v < c.p_latency
            if delayed:
                self.stats.latency += 1
            if u < c.p503:
                action = "slowdown"
            elif u < c.p503 + c.p_reset:
                action = "reset"
            elif u < c.p503 + c.p_reset + c.p_lost_response:
                action = "lost_response"
            elif u < c.p503 + c.p_reset + c.p_lost_response + c.p_cut_body:
                action = "cut_body"
            else:
                action = "forward"
            if action == "slowdown":
                self.stats.slowdown += 1
            elif action == "reset":
                self.stats.reset += 1
            elif action == "lost_response":
                self.stats.lost_response += 1
            elif action == "cut_body":
                self.stats.cut_body += 1
            return action, delayed, c.latency_s


class _ResetConnection(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect
    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), as a dropped S3 connection does."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        raise _ResetConnection

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, head: bool) -> None:
        self.send_response_only(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _control(self, body: bytes) -> None:
        st = self.server.state
        if self.path.startswith(CONTROL + "/stats"):
            with st.lock:
                d = asdict(st.stats)
                d["injected"] = st.stats.injected
                d["config"] = asdict(st.config)
            out = json.dumps(d).encode()
        elif self.path.startswith(CONTROL + "/config") and self.command == "POST":
            try:
                st.configure(FaultConfig.from_dict(json.loads(body or b"{}")))
            except (ValueError, TypeError, re.error) as exc:
                out = json.dumps({"error": str(exc)}).encode()
                self._send(400, [("Content-Type", "application/json"),
                                 ("Content-Length", str(len(out)))], out, False)
                return
            out = json.dumps(asdict(st.config)).encode()
        else:
            out = b'{"error": "unknown control path"}'
        self._send(200, [("Content-Type", "application/json"), ("Content-Length", str(len(out)))],
                   out, False)

    def _handle(self) -> None:
        body = self._body()
        if self.path.startswith(CONTROL):
            self._control(body)
            return
        st = self.server.state
        path = urlsplit(self.path).path
        action, delayed, latency = st.decide(self.command, path)
        if delayed:
            time.sleep(latency)
        head = self.command == "HEAD"
        if action == "slowdown":
            rid = hashlib.sha1(f"{path}{time.monotonic_ns()}".encode()).hexdigest()[:16].upper()
            xml = b"" if head else SLOWDOWN_XML.format(resource=path, rid=rid).encode()
            self._send(503, [("Content-Type", "application/xml"), ("Content-Length", str(len(xml))),
                             ("x-amz-request-id", rid), ("Retry-After", "1")], xml, head)
            return
        if action == "reset":
            self._reset()
        status, headers, payload = self._forward(body)
        if action == "lost_response":
            self._reset()
        with st.lock:
            st.stats.forwarded += 1
        if not any(k.lower() == "content-length" for k, _ in headers) and not head:
            headers.append(("Content-Length", str(len(payload))))
        if action == "cut_body" and len(payload) > 1:
            self._send(status, headers, payload[: len(payload) // 2], head)  # promised all of it
            self.wfile.flush()
            self._reset()
        self._send(status, headers, payload, head)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        st = self.server.state
        conn = http.client.HTTPConnection(st.host, st.port, timeout=120)
        try:
            # The Host header is passed through unchanged: it is part of the SigV4 signature.
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in _HOP and k.lower() != "content-length":
                    conn.putheader(k, v)
            if body or self.command in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            payload = b"" if self.command == "HEAD" else resp.read()
            headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
            if self.command != "HEAD":  # upstream may have sent it chunked: re-frame it
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(payload))))
            return resp.status, headers, payload
        finally:
            conn.close()

    def _dispatch(self) -> None:
        try:
            self._handle()
        except _ResetConnection:
            pass
        except (ConnectionError, socket.timeout, OSError):
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, state: _State):
        super().__init__(addr, _Handler)
        self.state = state

    def shutdown_request(self, request):
        # After a reset the socket must close without the orderly shutdown(SHUT_WR) the base
        # class does, or the kernel sends FIN instead of RST.
        try:
            linger = request.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
            if struct.unpack("ii", linger)[0]:
                request.close()
                return
        except OSError:
            pass
        super().shutdown_request(request)


def serve(upstream: str, port: int, config: FaultConfig) -> None:
    """Serve in this process until killed (what ``FaultProxy.start`` runs)."""
    srv = _Server(("127.0.0.1", port), _State(upstream, config))
    srv.serve_forever(poll_interval=0.2)


class FaultProxy:
    """Start/stop the proxy in a subprocess; ``endpoint`` is what AWS_ENDPOINT_URL should be."""

    def __init__(self, upstream: str, config: FaultConfig | None = None, port: int | None = None):
        self.upstream = upstream
        self.config = config or FaultConfig()
        self.port = port or free_port()
        self._proc = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "FaultProxy":
        self._proc = Child([sys.executable, "-m", "pdgen_core.testing.faults", "--serve", "--upstream",
                            self.upstream, "--port", str(self.port),
                            "--config", json.dumps(asdict(self.config))]).start(
            self.stats, timeout=timeout, poll_s=0.1,
            failure=lambda: f"fault proxy did not start on {self.endpoint}")
        return self

    def _call(self, path: str, data: bytes | None = None) -> dict:
        req = urllib.request.Request(self.endpoint + CONTROL + path, data=data,
                                     method="POST" if data is not None else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stats(self) -> dict:
        """Counts so far: requests, forwarded, slowdown, reset, lost_response, cut_body, latency,
        injected."""
        return self._call("/stats")

    def configure(self, config: FaultConfig) -> None:
        """Change the faults from now on (the per-key request counters restart)."""
        self.config = config
        self._call("/config", json.dumps(asdict(config)).encode())

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None


@contextmanager
def fault_proxy(upstream: str, config: FaultConfig | None = None):
    """A running proxy to ``upstream`` for the duration of the block."""
    p = FaultProxy(upstream, config).start()
    try:
        yield p
    finally:
        p.stop()


def main() -> None:  # pragma: no cover - manual use
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", default=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"))
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--p503", type=float, default=0.0)
    ap.add_argument("--p-reset", type=float, default=0.0)
    ap.add_argument("--p-lost-response", type=float, default=0.0)
    ap.add_argument("--p-cut-body", type=float, default=0.0)
    ap.add_argument("--p-latency", type=float, default=0.0)
    ap.add_argument("--latency-s", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--path-regex", default="")
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.config:
        cfg = FaultConfig.from_dict(json.loads(a.config))
    else:
        cfg = FaultConfig(p503=a.p503, p_reset=a.p_reset, p_lost_response=a.p_lost_response,
                          p_cut_body=a.p_cut_body, p_latency=a.p_latency, latency_s=a.latency_s, seed=a.seed,
                          path_regex=a.path_regex)
    if a.serve:
        serve(a.upstream, a.port, cfg)
        return
    p = FaultProxy(a.upstream, cfg, port=a.port or None).start()
    print(f"fault proxy at {p.endpoint} -> {a.upstream}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        p.stop()


if __name__ == "__main__":
    main()

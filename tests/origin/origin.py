#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause (see LICENSE)
"""rlproxy's test origin: a threaded HTTP/1.1 keep-alive server on loopback (python3 stdlib only).

It parses requests itself (not http.server) so it can report the raw request-target and header
case, decode chunked bodies, stream huge bodies without holding them, and misbehave on purpose
(/truncate). Prints exactly "listening on PORT" on stdout once it accepts connections.

Body pattern, shared with tests/e2e/harness.c: byte i of a /bytes/N body is (i*131 + 7) & 0xff.
The period is 256, so any 64 KiB write starting at a multiple of 256 is one constant buffer.

Endpoints (any method unless noted; HEAD returns the GET headers without a body):
  /bytes/N[?chunked=1|?close=1]  N pattern bytes: Content-Length, chunked, or close-delimited
  /sink[?delay=S]                reads the body (after S seconds); JSON
                                 {"length","sha256","chunked","method"}
  /echo                          the request body back, Content-Type copied from the request
  /headers[/anything]            JSON {"method","target","version","headers":[[name,value],...],
                                 "body_length"}; the target is raw: /headers/a/../b shows as sent
  /status/N[?reason=R]           status N with reason R; no Content-Type; no body for 1xx/204/304
  /cookies                       two Set-Cookie and two X-Dup headers
  /gzip                          gzip bytes, Content-Encoding: gzip, X-Raw-Sha256 of those bytes
  /slow?delay=S                  sleeps S seconds, then 200 "slow"
  /truncate[?chunked=1]          Content-Length: 1000 (or chunked), sends 500 bytes, closes
  /drip?n=N&interval=MS          N one-byte chunks, one every MS milliseconds
  /slowsink?rate=B               reads the body at about B bytes per second (a slow upstream);
                                 then JSON {"length","sha256","chunked","method"} like /sink
  /flaky?key=K&fail=N&status=S&retry_after=R&mode=M&early=1
                                 the first N requests with key K (default N 0) fail: status S
                                 (default 503) with Retry-After R when given (an integer, or
                                 "date+N": an HTTP-date N seconds ahead); mode=reset closes with
                                 RST instead of answering; mode=hang answers nothing until the
                                 client goes away (at most 30 s); early=1 answers S without reading
                                 the body (Connection: close). Later requests get 200 JSON
                                 {"key","attempt","method","length","sha256"} of the body.
                                 Per-key counters, bounded to 10000 keys
  /api?family=F&limit=L&window=W an API with its own limit per Authorization value: L requests per
                                 fixed window of W whole seconds (aligned to the clock), announced
                                 in family F's headers (github, x, reddit, openai, ietf); over it
                                 429 + Retry-After. /api/stats?token=T: {"windows":[[start,served],
                                 ...],"limited":n} for that Authorization value
  /count?key=K                   JSON {"key","count","times"}: the /flaky requests seen for K and
                                 their arrival times (time.monotonic(), the last 100); not logged
  /log                           JSON list of recent requests {method,target,time,conn,mono},
                                 newest last, bounded to 10000; /log and /stats themselves are
                                 not logged. "time" is time.time() (wall clock, seconds); "mono"
                                 is time.monotonic() (CLOCK_MONOTONIC on Linux, the clock of
                                 now_ms() in the C harness), taken at the same moment: once the
                                 request head has been read, before the endpoint runs
  /stats                         JSON {"connections" (open now, this one included), "accepted"
                                 (ever, this one included), "requests", "streams_active",
                                 "bytes_sent" (body bytes written by /bytes so far)}
JSON is compact (separators "," and ":") so C tests can match it with strstr.
"""

import argparse
import collections
import email.utils
import gzip
import hashlib
import json
import socket
import socketserver
import ssl
import struct
import sys
import math
import threading
import time
from urllib.parse import parse_qs, urlsplit

BLOCK = 64 * 1024
PATTERN = bytes(((i * 131 + 7) & 0xFF) for i in range(BLOCK + 256))
MAX_LINE = 64 * 1024
MAX_HEADERS = 1000
MAX_ECHO = 64 * 1024 * 1024
LOG_KEEP = 10000
GZIP_BODY = gzip.compress(b"rlproxy gzip test body\n" * 2000, compresslevel=6, mtime=0)

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    206: "Partial Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large",
    414: "URI Too Long", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


class BadRequest(Exception):
    pass


class State:
    """Counters and the request log, shared by all connection threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.log = collections.deque(maxlen=LOG_KEEP)
        self.connections = 0
        self.conn_seq = 0
        self.requests = 0
        self.streams_active = 0
        self.bytes_sent = 0

    def add(self, field, delta):
        with self.lock:
            setattr(self, field, getattr(self, field) + delta)
            return getattr(self, field)


STATE = State()
VERBOSE = False


def vlog(msg):
    if VERBOSE:
        sys.stderr.write("origin: %s\n" % msg)
        sys.stderr.flush()


def pattern_slice(offset, length):
    start = offset & 0xFF
    return memoryview(PATTERN)[start:start + length]


class Request:
    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        split = urlsplit(target)
        self.path = split.path
        self.query = parse_qs(split.query, keep_blank_values=True)

    def header(self, name):
        lname = name.lower()
        for hname, value in self.headers:
            if hname.lower() == lname:
                return value
        return None

    def tokens(self, name):
        out = []
        for hname, value in self.headers:
            if hname.lower() == name.lower():
                out += [t.strip().lower() for t in value.split(",") if t.strip()]
        return out

    def arg(self, name, default=None):
        vals = self.query.get(name)
        return vals[0] if vals else default

    def keep_alive(self):
        conn = self.tokens("Connection")
        if self.version == "HTTP/1.1":
            return "close" not in conn
        return "keep-alive" in conn


class Body:
    """Streams the request body (Content-Length or chunked); sends 100 Continue on first read."""

    def __init__(self, conn, req):
        self.conn = conn
        self.rfile = conn.rfile
        self.expect = "100-continue" in req.tokens("Expect")
        te = req.tokens("Transfer-Encoding")
        cl = req.header("Content-Length")
        self.chunked = bool(te) and te[-1] == "chunked"
        self.left = 0
        self.done = False
        if te and not self.chunked:
            raise BadRequest("unsupported transfer-encoding")
        if self.chunked:
            self.left = 0
        elif cl is not None:
            if not cl.strip().isdigit():
                raise BadRequest("bad content-length")
            self.left = int(cl)
            self.done = self.left == 0
        else:
            self.done = True
        self.length = 0

    def _continue(self):
        if self.expect:
            self.expect = False
            self.conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _next_chunk(self):
        line = self.rfile.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            raise BadRequest("chunk size line")
        size = line.split(b";", 1)[0].strip()
        try:
            self.left = int(size, 16)
        except ValueError:
            raise BadRequest("bad chunk size %r" % size)
        if self.left == 0:
            while self.rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                pass  # trailers are read and dropped
            self.done = True

    def read(self, n=BLOCK):
        if self.done:
            return b""
        self._continue()
        if self.chunked and self.left == 0:
            self._next_chunk()
            if self.done:
                return b""
        data = self.rfile.read(min(n, self.left))
        if not data:
            raise BadRequest("body truncated")
        self.left -= len(data)
        self.length += len(data)
        if self.chunked and self.left == 0:
            if self.rfile.readline(MAX_LINE) not in (b"\r\n", b"\n"):
                raise BadRequest("chunk not followed by CRLF")
        elif not self.chunked and self.left == 0:
            self.done = True
        return data

    def drain(self):
        while self.read():
            pass

    def sha256(self):
        """Reads the rest of the body; its SHA-256 in hex, as the tests compute it."""
        digest = hashlib.sha256()
        while True:
            data = self.read()
            if not data:
                return digest.hexdigest()
            digest.update(data)


class Connection:
    def __init__(self, sock):
        self.sock = sock
        self.rfile = sock.makefile("rb", buffering=BLOCK)
        self.close_after = False
        self.started = False
        self.abort = False  # close with RST (SO_LINGER 0) instead of a lingering close

    def send(self, data):
        self.sock.sendall(data)

    def start(self, req, status, reason=None, headers=(), length=None, chunked=False, first=b""):
        """Sends the status line and headers. length None and not chunked: close-delimited.
        first: body bytes to send in the same write as the head. A small response then leaves in
        one segment; written separately, its body would wait (Nagle) for the ACK of the head, which
        the client's TCP may delay by up to 40 ms."""
        if reason is None:
            reason = REASONS.get(status, "Unknown")
        if status >= 200:
            self.started = True
        lines = ["HTTP/1.1 %d %s" % (status, reason)]
        lines += ["%s: %s" % (k, v) for k, v in headers]
        if length is not None:
            lines.append("Content-Length: %d" % length)
        elif chunked:
            lines.append("Transfer-Encoding: chunked")
        no_body = status < 200 or status in (204, 304)
        if (length is None and not chunked and not no_body) or not req.keep_alive():
            self.close_after = True
        if self.close_after:
            lines.append("Connection: close")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + first)

    def simple(self, req, status, body=b"", headers=(), reason=None):
        if status < 200 or status in (204, 304):
            self.start(req, status, reason, headers)
            return
        self.start(req, status, reason, headers, length=len(body),
                   first=body if req.method != "HEAD" else b"")

    def json(self, req, obj, status=200):
        self.json_headers(req, obj, [], status)

    def json_headers(self, req, obj, headers, status=200):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.simple(req, status, body, list(headers) + [("Content-Type", "application/json")])


def read_request(conn):
    """Returns a Request, or None at a clean EOF between requests."""
    line = conn.rfile.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore empty lines before a request-line
        line = conn.rfile.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        raise BadRequest("request line too long")
    parts = line.rstrip(b"\r\n").decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("bad request line")
    headers = []
    while True:
        hline = conn.rfile.readline(MAX_LINE + 1)
        if hline in (b"\r\n", b"\n"):
            break
        if not hline.endswith(b"\n") or len(headers) >= MAX_HEADERS:
            raise BadRequest("bad header block")
        name, sep, value = hline.rstrip(b"\r\n").partition(b":")
        if not sep or not name:
            raise BadRequest("bad header line")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return Request(parts[0], parts[1], parts[2], headers)


# ---- endpoints: each gets (conn, req, body) and must consume or drain the body -------------------


def ep_bytes(conn, req, body):
    try:
        total = int(req.path.split("/")[2])
    except (IndexError, ValueError):
        raise BadRequest("bad /bytes size")
    body.drain()
    hdrs = [("Content-Type", "application/octet-stream")]
    chunked = req.arg("chunked") == "1" and req.version == "HTTP/1.1"
    close = req.arg("close") == "1" or (req.arg("chunked") == "1" and not chunked)
    length = None if (chunked or close) else total
    if req.method != "HEAD" and length is not None and total <= BLOCK:
        conn.start(req, 200, None, hdrs, length=length, first=pattern_slice(0, total))  # one write
        STATE.add("bytes_sent", total)
        return
    conn.start(req, 200, None, hdrs, length=length, chunked=chunked)
    if req.method == "HEAD":
        return
    STATE.add("streams_active", 1)
    try:
        stream_pattern(conn, total, chunked)
    finally:
        STATE.add("streams_active", -1)


def stream_pattern(conn, total, chunked):
    off = 0
    while off < total:
        n = min(BLOCK, total - off)
        data = pattern_slice(off, n)
        if chunked:
            conn.send(b"%x\r\n" % n + data + b"\r\n")
        else:
            conn.send(data)
        off += n
        STATE.add("bytes_sent", n)
    if chunked:
        conn.send(b"0\r\n\r\n")


def ep_sink(conn, req, body):
    time.sleep(float(req.arg("delay", "0")))  # a slow reader: the sender must be held back
    sha256 = body.sha256()
    conn.json(req, {"length": body.length, "sha256": sha256,
                    "chunked": body.chunked, "method": req.method})


def ep_echo(conn, req, body):
    parts = []
    while True:
        data = body.read()
        if not data:
            break
        parts.append(data)
        if body.length > MAX_ECHO:
            raise BadRequest("echo body too large")
    hdrs = []
    ctype = req.header("Content-Type")
    if ctype is not None:
        hdrs.append(("Content-Type", ctype))
    conn.simple(req, 200, b"".join(parts), hdrs)


def ep_headers(conn, req, body):
    body.drain()
    conn.json(req, {"method": req.method, "target": req.target, "version": req.version,
                    "headers": [[k, v] for k, v in req.headers], "body_length": body.length})


def ep_status(conn, req, body):
    body.drain()
    try:
        code = int(req.path.split("/")[2])
    except (IndexError, ValueError):
        raise BadRequest("bad /status code")
    if not 100 <= code <= 999:
        raise BadRequest("bad /status code")
    # Deliberately no Content-Type: tests check the proxy does not invent one.
    conn.simple(req, code, b"status %d\n" % code, (), reason=req.arg("reason"))


def ep_cookies(conn, req, body):
    body.drain()
    hdrs = [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/"),
            ("X-Dup", "1"), ("X-Dup", "2"), ("Content-Type", "text/plain")]
    conn.simple(req, 200, b"cookies\n", hdrs)


def ep_gzip(conn, req, body):
    body.drain()
    hdrs = [("Content-Type", "text/plain"), ("Content-Encoding", "gzip"),
            ("X-Raw-Sha256", hashlib.sha256(GZIP_BODY).hexdigest())]
    conn.simple(req, 200, GZIP_BODY, hdrs)


def ep_slow(conn, req, body):
    body.drain()
    time.sleep(float(req.arg("delay", "1")))
    conn.simple(req, 200, b"slow", [("Content-Type", "text/plain")])


def ep_truncate(conn, req, body):
    body.drain()
    chunked = req.arg("chunked") == "1" and req.version == "HTTP/1.1"
    hdrs = [("Content-Type", "application/octet-stream")]
    if chunked:
        conn.start(req, 200, None, hdrs, chunked=True)
    else:
        conn.start(req, 200, None, hdrs, length=1000)
    if req.method != "HEAD":
        data = pattern_slice(0, 500)
        conn.send(b"1f4\r\n" + data + b"\r\n" if chunked else data)  # and no last chunk
        conn.close_after = True


def ep_rawhead(conn, req, body):
    """A response head the proxy must not pass on as it is: ?kind=dup-length (two Content-Lengths
    that disagree), bad-length (not a number), list-length ("5, 5": one length, fine), cr-value (a
    CR inside a value), space-name (a space before the colon). The body is 5 bytes."""
    body.drain()
    kind = req.arg("kind", "dup-length")
    heads = {
        "dup-length": b"Content-Length: 5\r\nContent-Length: 6\r\n",
        "bad-length": b"Content-Length: 5x\r\n",
        "list-length": b"Content-Length: 5, 5\r\n",
        "cr-value": b"Content-Length: 5\r\nX-Split: a\rInjected: yes\r\n",
        "space-name": b"Content-Length: 5\r\nX-Space : yes\r\nX-Fine: yes\r\n",
    }
    if kind not in heads:
        raise BadRequest("bad /rawhead kind")
    conn.send(b"HTTP/1.1 200 OK\r\n" + heads[kind] + b"\r\n" +
              (b"" if req.method == "HEAD" else b"hello"))
    conn.close_after = True


def ep_drip(conn, req, body):
    body.drain()
    n = int(req.arg("n", "10"))
    interval = int(req.arg("interval", "100")) / 1000.0
    chunked = req.version == "HTTP/1.1"
    conn.start(req, 200, None, [("Content-Type", "application/octet-stream")], chunked=chunked)
    if req.method == "HEAD":
        return
    for i in range(n):
        data = pattern_slice(i, 1)
        conn.send(b"1\r\n" + data + b"\r\n" if chunked else data)
        if i + 1 < n:
            time.sleep(interval)
    if chunked:
        conn.send(b"0\r\n\r\n")


def ep_log(conn, req, body):
    body.drain()
    with STATE.lock:
        entries = list(STATE.log)
    conn.json(req, entries)


def ep_stats(conn, req, body):
    body.drain()
    with STATE.lock:
        obj = {"connections": STATE.connections, "accepted": STATE.conn_seq,
               "requests": STATE.requests, "streams_active": STATE.streams_active,
               "bytes_sent": STATE.bytes_sent}
    conn.json(req, obj)


FLAKY_KEYS = 10000
FLAKY_TIMES = 100
FLAKY = collections.OrderedDict()  # key -> [count, deque of arrival times]; under STATE.lock


def flaky_arrival(key):
    """Counts one /flaky request for key; returns its 1-based attempt number."""
    now = time.monotonic()
    with STATE.lock:
        entry = FLAKY.get(key)
        if entry is None:
            entry = FLAKY[key] = [0, collections.deque(maxlen=FLAKY_TIMES)]
            while len(FLAKY) > FLAKY_KEYS:
                FLAKY.popitem(last=False)
        entry[0] += 1
        entry[1].append(now)
        return entry[0]


def ep_flaky(conn, req, body):
    attempt = flaky_arrival(req.arg("key", ""))
    try:
        fail = int(req.arg("fail", "0"))
        status = int(req.arg("status", "503"))
    except ValueError:
        raise BadRequest("bad /flaky parameters")
    mode = req.arg("mode", "")
    if attempt <= fail:
        if req.arg("early") == "1" and mode == "":
            conn.close_after = True  # the body is left unread: this connection cannot go on
            flaky_fail(conn, req, attempt, status)
            return
        body.drain()
        if mode == "reset":
            conn.close_after = True
            conn.abort = True
            return
        if mode == "hang":
            flaky_hang(conn)
            return
        flaky_fail(conn, req, attempt, status)
        return
    sha256 = body.sha256()
    conn.json(req, {"key": req.arg("key", ""), "attempt": attempt, "method": req.method,
                    "length": body.length, "sha256": sha256})


def flaky_fail(conn, req, attempt, status):
    hdrs = [("Content-Type", "text/plain")]
    ra = req.arg("retry_after")
    if ra is not None:
        if ra.startswith("date+"):
            ra = email.utils.formatdate(time.time() + float(ra[5:]), usegmt=True)
        hdrs.append(("Retry-After", ra))
    conn.simple(req, status, b"flaky: attempt %d fails with %d\n" % (attempt, status), hdrs)


def flaky_hang(conn):
    """No answer until the client closes (EOF or reset), for at most 30 s."""
    conn.close_after = True
    deadline = time.monotonic() + 30
    conn.sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if not conn.sock.recv(BLOCK):
                return
        except socket.timeout:
            continue
        except OSError:
            return


def ep_count(conn, req, body):
    body.drain()
    key = req.arg("key", "")
    with STATE.lock:
        entry = FLAKY.get(key)
        count, times = (entry[0], list(entry[1])) if entry is not None else (0, [])
    conn.json(req, {"key": key, "count": count, "times": times})


API_TOKENS = 10000
API = collections.OrderedDict()  # token -> {"windows": {start: served}, "limited": n}; STATE.lock


def api_headers(family, limit, remaining, reset, now, window):
    """The quota as each vendor announces it. Windows are aligned to whole seconds, so the epoch
    families are exact; delta seconds round up (the origin never says "sooner" than it means)."""
    delta = max(0, math.ceil(reset - now))
    if family == "github":
        return [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Remaining", str(remaining)),
                ("X-RateLimit-Used", str(limit - remaining)), ("X-RateLimit-Reset", str(int(reset))),
                ("X-RateLimit-Resource", "core")]
    if family == "x":
        return [("x-rate-limit-limit", str(limit)), ("x-rate-limit-remaining", str(remaining)),
                ("x-rate-limit-reset", str(int(reset)))]
    if family == "reddit":
        return [("x-ratelimit-used", str(limit - remaining)),
                ("x-ratelimit-remaining", "%.1f" % remaining), ("x-ratelimit-reset", str(delta))]
    if family == "openai":
        ms = max(0, int((reset - now) * 1000) + 1)
        return [("x-ratelimit-limit-requests", str(limit)),
                ("x-ratelimit-remaining-requests", str(remaining)),
                ("x-ratelimit-reset-requests", "%dms" % ms),
                ("x-ratelimit-limit-tokens", "90000"), ("x-ratelimit-remaining-tokens", "89000"),
                ("x-ratelimit-reset-tokens", "1ms")]
    if family == "ietf":
        return [("RateLimit-Policy", '"default";q=%d;w=%d' % (limit, int(window))),
                ("RateLimit", '"default";r=%d;t=%d' % (remaining, delta))]
    raise BadRequest("unknown family")


def ep_api(conn, req, body):
    """An API with its own limit per token (Authorization): `limit` requests per fixed window of
    `window` whole seconds, announced in the headers of `family`; over it, 429 with Retry-After.
    /api/stats?token=T says what the token got."""
    body.drain()
    token = req.header("Authorization") or ""
    if req.path == "/api/stats":
        with STATE.lock:
            entry = API.get(req.arg("token", ""), {"windows": {}, "limited": 0})
            out = {"windows": sorted([int(k), v] for k, v in entry["windows"].items()),
                   "limited": entry["limited"]}
        conn.json(req, out)
        return
    try:
        family = req.arg("family", "github")
        limit = int(req.arg("limit", "10"))
        window = int(req.arg("window", "2"))
    except ValueError:
        raise BadRequest("bad /api parameters")
    if limit < 1 or window < 1:
        raise BadRequest("bad /api parameters")
    now = time.time()
    start = math.floor(now / window) * window
    reset = start + window
    with STATE.lock:
        entry = API.get(token)
        if entry is None:
            entry = API[token] = {"windows": {}, "limited": 0}
            while len(API) > API_TOKENS:
                API.popitem(last=False)
        served = entry["windows"].get(start, 0)
        over = served >= limit
        if over:
            entry["limited"] += 1
        else:
            entry["windows"][start] = served + 1
            served += 1
    remaining = max(0, limit - served)
    hdrs = api_headers(family, limit, remaining, reset, now, window)
    if over:
        hdrs.append(("Retry-After", str(max(1, math.ceil(reset - now)))))
        conn.simple(req, 429, b"api: over the limit\n", hdrs + [("Content-Type", "text/plain")])
        return
    conn.json_headers(req, {"token_window": start, "served": served}, hdrs)


def ep_not_found(conn, req, body):
    body.drain()
    conn.simple(req, 404, b"not found\n", [("Content-Type", "text/plain")])


EXACT = {"/sink": ep_sink, "/echo": ep_echo, "/cookies": ep_cookies, "/gzip": ep_gzip,
         "/slow": ep_slow, "/truncate": ep_truncate, "/drip": ep_drip, "/log": ep_log,
         "/stats": ep_stats, "/headers": ep_headers, "/flaky": ep_flaky, "/count": ep_count,
         "/rawhead": ep_rawhead}
PREFIX = {"/bytes/": ep_bytes, "/status/": ep_status, "/headers/": ep_headers, "/api": ep_api}


def ep_slowsink(conn, req, body):
    """A slow upstream: reads the body at about rate bytes per second, so a proxy in front of it
    must stop reading its client instead of buffering the body."""
    try:
        rate = float(req.arg("rate", "1000000"))
    except ValueError:
        raise BadRequest("bad /slowsink rate")
    if rate <= 0:
        raise BadRequest("bad /slowsink rate")
    step = max(1024, min(BLOCK, int(rate / 20)))  # about 20 reads a second
    digest = hashlib.sha256()
    start = time.monotonic()
    while True:
        data = body.read(step)
        if not data:
            break
        digest.update(data)
        ahead = body.length / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    conn.json(req, {"length": body.length, "sha256": sha256,
                    "chunked": body.chunked, "method": req.method})


EXACT["/slowsink"] = ep_slowsink


def route(path):
    if path in EXACT:
        return EXACT[path]
    for prefix, fn in PREFIX.items():
        if path.startswith(prefix):
            return fn
    return ep_not_found


def serve_one(conn, req, conn_id):
    if req.path not in ("/log", "/stats", "/count"):
        with STATE.lock:
            STATE.requests += 1
            STATE.log.append({"method": req.method, "target": req.target,
                              "time": time.time(), "conn": conn_id,
                              "mono": time.monotonic()})
    vlog("%d %s %s %s" % (conn_id, req.method, req.target, req.version))
    body = Body(conn, req)
    route(req.path)(conn, req, body)


def lingering_close(sock):
    """Half-close, then read until the peer closes: closing with unread input would send RST and
    could destroy response bytes still in flight (RFC 9112 9.6)."""
    try:
        if isinstance(sock, ssl.SSLSocket):
            sock.settimeout(2)
            sock = sock.unwrap()  # close_notify: a TLS client must see a clean end of body
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2)
        while sock.recv(BLOCK):
            pass
    except (OSError, ValueError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def abort_close(sock):
    """Close with RST: SO_LINGER on with a zero timeout drops the connection at once."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        STATE.add("connections", 1)
        conn_id = STATE.add("conn_seq", 1)
        try:
            sock.settimeout(self.server.idle_timeout)
            if self.server.tls_ctx is not None:
                sock = self.server.tls_ctx.wrap_socket(sock, server_side=True)
            self.loop(sock, conn_id)
        except (OSError, ssl.SSLError, BadRequest) as exc:
            vlog("connection %d: %r" % (conn_id, exc))
        finally:
            STATE.add("connections", -1)

    def loop(self, sock, conn_id):
        conn = Connection(sock)
        try:
            while True:
                try:
                    req = read_request(conn)
                except BadRequest as exc:
                    vlog("connection %d: bad request: %s" % (conn_id, exc))
                    conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                              b"Connection: close\r\n\r\n")
                    break
                if req is None:
                    break
                conn.started = False
                try:
                    serve_one(conn, req, conn_id)
                except BadRequest as exc:
                    vlog("connection %d: bad request: %s" % (conn_id, exc))
                    if not conn.started:
                        conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                  b"Connection: close\r\n\r\n")
                    break
                if conn.close_after:
                    break
        finally:
            conn.rfile.close()
            if conn.abort:
                abort_close(sock)
            else:
                lingering_close(sock)


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        if VERBOSE:
            super().handle_error(request, client_address)


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description="rlproxy test origin (loopback only)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="127.0.0.1", choices=["127.0.0.1", "::1"])
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--idle-timeout", type=float, default=60.0)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    VERBOSE = args.verbose
    if args.bind == "::1":
        Server.address_family = socket.AF_INET6
    server = Server((args.bind, args.port), Handler)
    server.idle_timeout = args.idle_timeout
    server.tls_ctx = None
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        server.tls_ctx = ctx
    print("listening on %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause (see LICENSE)
"""bench/backpressure.py — the measurements of issue 6 at the issue's sizes (the e2e suite
tests/e2e/test_backpressure.c checks the same bounds with smaller ones).

  slow      a client reading a big response at a fixed rate (default 1 GiB at 8 MB/s; the issue's
            1 GiB at 1 MB/s would take 18 minutes): rlproxy's RSS growth over its post-warm-up
            baseline, and how far the origin ran ahead of the client
  idle      10,000 idle keep-alive client connections: RSS per connection (opened only, and after
            one request each), request latency with none and with all of them open
  overload  4 x max_inflight clients hammering for a while: RSS over time, 200s and 503s per
            second, and how soon after the load stops max_inflight requests at once all succeed
  backlog   a burst of connects while rlproxy does not accept: how many wait in the listen queue

Runs the real rlproxy and tests/origin/origin.py on 127.0.0.1 ephemeral ports; every wait is
bounded. Prints a Markdown report on stdout (progress on stderr).

  bench/backpressure.py [--bin src/rlproxy] [--only slow,idle,overload,backlog]
                        [--slow-size BYTES] [--slow-rate BYTES_PER_S] [--idle N]
                        [--inflight N] [--hammer-seconds S]
"""

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = 64 * 1024
PATTERN = bytes(((i * 131 + 7) & 0xFF) for i in range(BLOCK + 256))


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


class Origin:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/origin/origin.py")],
                                     stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise SystemExit("origin did not start: %r" % line)
        self.port = int(line.split()[2])

    def get(self, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=10) as r:
            return r.read()

    def stat(self, key):
        return json.loads(self.get("/stats"))[key]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Proxy:
    def __init__(self, binary, yaml):
        self.dir = tempfile.mkdtemp(prefix="rlproxy-bench-")
        conf = os.path.join(self.dir, "rlproxy.yaml")
        with open(conf, "w") as f:
            # every client is 127.0.0.1: no access.max_connections_per_client cap
            f.write('listen: ["127.0.0.1:0"]\nadmin:\n  listen: ["127.0.0.1:0"]\n'
                    'access:\n  max_connections_per_client: 0\n' + yaml)
        self.log_path = os.path.join(self.dir, "rlproxy.log")
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary, "-c", conf], stdout=self.logf, stderr=self.logf)
        self.port = self.admin_port = None
        deadline = time.monotonic() + 10
        while (self.port is None or self.admin_port is None) and time.monotonic() < deadline:
            time.sleep(0.02)
            with open(self.log_path) as f:
                for line in f:
                    if "listening on 127.0.0.1:" in line:
                        port = int(line.rsplit(":", 1)[1].split()[0])
                        if "admin" in line:
                            self.admin_port = port
                        else:
                            self.port = port
        if self.port is None or self.admin_port is None:
            raise SystemExit("rlproxy did not start; log:\n" + open(self.log_path).read())

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def metric(self, name):
        url = "http://127.0.0.1:%d/metrics" % self.admin_port
        with urllib.request.urlopen(url, timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(35)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()


def request_bytes(origin, path, extra=""):
    return ("GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n"
            % (origin.port, path, origin.port, extra)).encode()


def read_response(sock, timeout=10.0):
    """(status, headers text, body) of one Content-Length response on a blocking socket"""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the response head")
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed in the body")
        body += data
    return status, head, body


def timed_get(proxy, origin, path):
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(request_bytes(origin, path))
    status, _, _ = read_response(s)
    s.close()
    if status // 100 != 2:
        raise SystemExit("GET %s: status %d" % (path, status))
    return (time.monotonic() - t0) * 1000.0


def close_rst(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    s.close()


# ---- slow reader ----------------------------------------------------------------------------------

def bench_slow(args, out):
    size, rate = args.slow_size, args.slow_rate
    origin = Origin()
    proxy = Proxy(args.bin, "workers: 2\n")
    try:
        s = socket.create_connection(("127.0.0.1", proxy.port))
        s.sendall(request_bytes(origin, "/bytes/%d" % (4 << 20)))
        read_response(s)
        s.close()
        time.sleep(0.2)
        base = proxy.rss_kib()
        sent_base = origin.stat("bytes_sent")
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.connect(("127.0.0.1", proxy.port))
        s.sendall(request_bytes(origin, "/bytes/%d" % size))
        s.settimeout(30)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, got_bytes = buf.partition(b"\r\n\r\n")
        got = len(got_bytes)
        rss_max, gap_max, samples = base, 0, []
        t0 = time.monotonic()
        next_sample = t0
        bad = None
        while got < size:
            now = time.monotonic()
            if now >= next_sample:
                rss = proxy.rss_kib()
                gap = origin.stat("bytes_sent") - sent_base - got
                rss_max, gap_max = max(rss_max, rss), max(gap_max, gap)
                samples.append((now - t0, rss, gap))
                next_sample = now + 1.0
                if len(samples) % 10 == 1:
                    log("slow: %.0f s, %d MiB of %d, RSS %d KiB (+%d), origin ahead %.1f MiB"
                        % (now - t0, got >> 20, size >> 20, rss, rss - base, gap / 2**20))
            due = t0 + got / rate
            if due > now:
                time.sleep(min(due - now, 0.02))
                continue
            data = s.recv(min(16384, size - got))
            if not data:
                raise SystemExit("slow: body ended at %d of %d" % (got, size))
            start = got & 0xFF
            if bad is None and data != PATTERN[start:start + len(data)]:
                bad = got
            got += len(data)
        secs = time.monotonic() - t0
        s.close()
        out.append("## Slow client: %d MiB read at %.1f MB/s\n" % (size >> 20, rate / 1e6))
        out.append("| figure | value |\n|---|---|")
        out.append("| transfer | %d bytes in %.1f s (%.2f MB/s), body %s |"
                   % (got, secs, got / secs / 1e6, "intact" if bad is None else
                      "WRONG at %d" % bad))
        out.append("| rlproxy RSS after warm-up (4 MiB fast download) | %d KiB |" % base)
        out.append("| rlproxy RSS max during the transfer (sampled every 1 s) | %d KiB (+%d KiB) |"
                   % (rss_max, rss_max - base))
        out.append("| origin ahead of the client, max | %.2f MiB |" % (gap_max / 2**20))
        out.append("| limit (issue) | RSS growth < 2 MiB |\n")
    finally:
        proxy.stop()
        origin.stop()


# ---- idle connections -----------------------------------------------------------------------------

def open_accepted(proxy, n, base, batch=100):
    """n connections, opened in batches that rlproxy has accepted before the next"""
    socks = []
    addr = ("127.0.0.1", proxy.port)
    while len(socks) < n:
        for _ in range(min(batch, n - len(socks))):
            socks.append(socket.create_connection(addr, timeout=10))
        deadline = time.monotonic() + 10
        while proxy.metric("rlproxy_open_connections") < base + len(socks):
            if time.monotonic() > deadline:
                raise SystemExit("rlproxy accepted fewer than %d connections" % len(socks))
            time.sleep(0.002)
    return socks


def use_all(origin, socks, window=100):
    req = request_bytes(origin, "/bytes/16")
    for i in range(0, len(socks), window):
        part = socks[i:i + window]
        for s in part:
            s.sendall(req)
        for s in part:
            status, _, _ = read_response(s)
            if status != 200:
                raise SystemExit("request on an idle connection: %d" % status)


def latencies(proxy, origin, n=20):
    out = {}
    for path in ("/status/204", "/bytes/16"):
        ms = sorted(timed_get(proxy, origin, path) for _ in range(n))
        out[path] = (sum(ms) / n, ms[n // 2], ms[-1])
    return out


def bench_idle(args, out):
    n = args.idle
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = n + 1024
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
        except (ValueError, OSError) as exc:
            out.append("## Idle connections\nSKIPPED: RLIMIT_NOFILE %d/%d: %s\n" % (soft, hard, exc))
            return
    origin = Origin()
    # max_connections above n: at its default (10000) accepting would pause at exactly 10,000
    proxy = Proxy(args.bin, "workers: 2\nbackpressure:\n  max_connections: %d\n" % (n + 1000))
    try:
        warm = open_accepted(proxy, 100, 0)
        use_all(origin, warm)
        for s in warm:
            close_rst(s)
        time.sleep(0.5)
        lat0 = latencies(proxy, origin)
        rss0 = proxy.rss_kib()
        t0 = time.monotonic()
        socks = open_accepted(proxy, n, 0)
        t_open = time.monotonic() - t0
        time.sleep(0.5)
        rss1 = proxy.rss_kib()
        use_all(origin, socks)
        t_used = time.monotonic() - t0
        time.sleep(0.5)
        rss2 = proxy.rss_kib()
        # connections idle for 1 s are folded (conn.c), and the freed heap is trimmed a second later
        time.sleep(2.0)
        rss3 = proxy.rss_kib()
        lat1 = latencies(proxy, origin)
        for s in socks:
            close_rst(s)
        out.append("## %d idle client connections (workers: 2)\n" % n)
        out.append("| figure | value |\n|---|---|")
        out.append("| rlproxy RSS before (after a warm-up of 100 connections) | %d KiB |" % rss0)
        out.append("| opened (accepted, no request yet) in %.1f s | %d KiB: **%.0f bytes per "
                   "connection** |" % (t_open, rss1, (rss1 - rss0) * 1024.0 / n))
        out.append("| after one request each (keep-alive, idle), by %.1f s, 0.5 s later | %d KiB: "
                   "%.0f bytes per connection |" % (t_used, rss2, (rss2 - rss0) * 1024.0 / n))
        out.append("| the same 2.5 s later (all folded into sleepers) | %d KiB: **%.0f bytes per "
                   "connection** |" % (rss3, (rss3 - rss0) * 1024.0 / n))
        for path in ("/status/204", "/bytes/16"):
            out.append("| latency %s, fresh connection, 20 runs: none open / %d open "
                       "(avg, median, max ms) | %.1f, %.1f, %.1f / %.1f, %.1f, %.1f |"
                       % ((path, n) + lat0[path] + lat1[path]))
        out.append("| limit (issue) | <= 1024 bytes per connection; a request < 100 ms |\n")
    finally:
        proxy.stop()
        origin.stop()


# ---- overload -------------------------------------------------------------------------------------

async def client_loop(port, req, stop_at, counts, lat, mine=None, once=False):
    reader = writer = None
    first = True
    while time.monotonic() < stop_at or (once and first):
        first = False
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), 10)
            t = time.monotonic()
            writer.write(req)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and "close" in value.lower():
                    close = True
            if length:
                await asyncio.wait_for(reader.readexactly(length), 15)
            sec = int(time.monotonic())
            counts.setdefault(sec, [0, 0, 0])[0 if status == 200 else 1 if status == 503 else 2] += 1
            waited = time.monotonic() - t
            if status == 200:
                lat.append(waited)
                if mine is not None:
                    mine[0] += 1
            if mine is not None:
                mine[1] = max(mine[1], waited)
            if close:
                writer.close()
                writer = None
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            sec = int(time.monotonic())
            counts.setdefault(sec, [0, 0, 0])[2] += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def run_clients(port, req, clients, seconds, proxy=None, rss=None, per_client=None,
                      once=False):
    """clients loop request after request for seconds (once: exactly one request each)"""
    counts, lat = {}, []
    stop_at = time.monotonic() + seconds
    if per_client is not None:
        per_client.extend([0, 0.0] for _ in range(clients))  # 200s, longest wait
    tasks = [asyncio.create_task(client_loop(port, req, stop_at, counts, lat,
                                             per_client[i] if per_client is not None else None,
                                             once))
             for i in range(clients)]
    if proxy is not None:
        t0 = time.monotonic()
        while time.monotonic() < stop_at:
            rss.append((time.monotonic() - t0, proxy.rss_kib()))
            await asyncio.sleep(0.25)
    await asyncio.gather(*tasks)
    return counts, lat


def summarize(counts):
    ok = sum(c[0] for c in counts.values())
    over = sum(c[1] for c in counts.values())
    other = sum(c[2] for c in counts.values())
    return ok, over, other


def bench_overload(args, out):
    inflight, clients, secs = args.inflight, 4 * args.inflight, args.hammer_seconds
    path = "/slow?delay=0.1"
    origin = Origin()
    proxy = Proxy(args.bin, "workers: 1\nbackpressure:\n  max_inflight: %d\n" % inflight)
    try:
        req = request_bytes(origin, path)
        timed_get(proxy, origin, "/status/204")
        before, _ = asyncio.run(run_clients(proxy.port, req, inflight, 3))
        log("overload: %d clients for 3 s (= max_inflight): %s" % (inflight, summarize(before)))
        rss, per_client = [], []
        during, lat = asyncio.run(run_clients(proxy.port, req, clients, secs, proxy, rss,
                                              per_client))
        starved = sum(1 for c in per_client if c[0] == 0)
        served = sorted(c[0] for c in per_client)
        waited_1s = sum(1 for c in per_client if c[1] > 1.0)
        waited_half = sum(1 for c in per_client if c[1] > secs / 2.0)
        stopped = time.monotonic()
        log("overload: %d clients for %d s: %s" % (clients, secs, summarize(during)))
        # recovery: max_inflight requests at once, every 50 ms, until all are answered 200
        first_ok = recovered = None
        tries = 0
        while time.monotonic() - stopped < 10 and recovered is None:
            tries += 1
            res, _ = asyncio.run(run_clients(proxy.port, req, inflight, 0, once=True))
            ok, _, _ = summarize(res)
            if ok and first_ok is None:
                first_ok = time.monotonic() - stopped
            if ok == inflight:
                recovered = time.monotonic() - stopped
            else:
                time.sleep(0.05)
        after, _ = asyncio.run(run_clients(proxy.port, req, inflight, 3))
        rss_at_1s = next((r for t, r in rss if t >= 1.0), rss[-1][1])
        rss_max_after = max(r for t, r in rss if t >= 1.0)
        b_ok, a_ok = summarize(before)[0], summarize(after)[0]
        d_ok, d_over, d_other = summarize(during)
        out.append("## Overload: %d clients on max_inflight %d (workers: 1), %d s, origin %s\n"
                   % (clients, inflight, secs, path))
        out.append("| figure | value |\n|---|---|")
        out.append("| before: %d clients (= max_inflight) for 3 s | %.0f x 200/s |"
                   % (inflight, b_ok / 3.0))
        out.append("| during: 200 / 503 / failed | %d / %d / %d (%.0f x 200/s, %.0f x 503/s) |"
                   % (d_ok, d_over, d_other, d_ok / secs, d_over / secs))
        if lat:
            lat.sort()
            out.append("| during: latency of the 200s (median, p99, max) | %.0f, %.0f, %.0f ms |"
                       % (lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000,
                          lat[-1] * 1000))
        out.append("| during: clients that got no 200 at all / 200s per client (min, median, max) "
                   "| %d of %d / %d, %d, %d |" % (starved, clients, served[0],
                                                 served[len(served) // 2], served[-1]))
        out.append("| during: clients that once waited over 1 s / over %d s for an answer "
                   "(200 or 503) | %d / %d of %d |" % (secs // 2, waited_1s, waited_half, clients))
        out.append("| rlproxy RSS at start, at 1 s, max after 1 s | %d, %d, %d KiB (+%d KiB) |"
                   % (rss[0][1], rss_at_1s, rss_max_after, rss_max_after - rss_at_1s))
        out.append("| after the load: first 200 / all %d at once 200 (try #%d) | %s / %s |"
                   % (inflight, tries,
                      "%.0f ms" % (first_ok * 1000) if first_ok is not None else "never",
                      "%.0f ms" % (recovered * 1000) if recovered is not None else "not in 10 s"))
        out.append("| after: %d clients for 3 s | %.0f x 200/s (%.0f%% of before) |"
                   % (inflight, a_ok / 3.0, 100.0 * a_ok / b_ok if b_ok else 0))
        out.append("| limit (issue) | RSS flat; full throughput again within 1 s |\n")
        per_sec = sorted(during.items())
        out.append("Per second during the load (200, 503, failed): " + ", ".join(
            "%d/%d/%d" % tuple(c) for _, c in per_sec) + "\n")
    finally:
        proxy.stop()
        origin.stop()


# ---- listen backlog -------------------------------------------------------------------------------

def bench_backlog(args, out):
    n = 1000
    proxy = Proxy(args.bin, "workers: 1\nbackpressure:\n  max_connections: 1\n")
    try:
        first = socket.create_connection(("127.0.0.1", proxy.port))
        deadline = time.monotonic() + 5
        while proxy.metric("rlproxy_open_connections") < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        socks = []
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", proxy.port))
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(0.5)
        import select
        poller = select.poll()
        for s in socks:
            poller.register(s, select.POLLOUT)
        done = sum(1 for fd, ev in poller.poll(0) if ev & select.POLLOUT)
        with open("/proc/sys/net/core/somaxconn") as f:
            somaxconn = int(f.read())
        out.append("## Listen queue while accepting is paused\n")
        out.append("| figure | value |\n|---|---|")
        out.append("| connects completed within 0.5 s, of %d (server.c listens with 1024; "
                   "net.core.somaxconn %d) | %d |\n" % (n, somaxconn, done))
        for s in socks:
            close_rst(s)
        close_rst(first)
    finally:
        proxy.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "src/rlproxy"))
    ap.add_argument("--only", default="slow,idle,overload,backlog")
    ap.add_argument("--slow-size", type=int, default=1 << 30)
    ap.add_argument("--slow-rate", type=float, default=8e6)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--hammer-seconds", type=int, default=10)
    args = ap.parse_args()
    out = ["# rlproxy backpressure figures\n",
           "`%s` on %s, %d CPUs, %s\n" % (" ".join(sys.argv), os.uname().release,
                                        os.cpu_count(), time.strftime("%Y-%m-%d %H:%M:%S"))]
    for name in args.only.split(","):
        log("running %s" % name)
        {"slow": bench_slow, "idle": bench_idle, "overload": bench_overload,
         "backlog": bench_backlog}[name](args, out)
    print("\n".join(out))


if __name__ == "__main__":
    main()

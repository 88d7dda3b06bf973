#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause (see LICENSE)
# bench/shared.sh — what a shared (Redis) rate limit costs per request, next to the same rule kept
# in the process (issue #9). See bench/SHARED.md for the method and the figures.
#
# Starts, on 127.0.0.1 only, each on a free port and with its own temporary config:
#   - an nginx origin serving a 1 KiB file as /local/1k and /shared/1k (keep-alive, sendfile);
#   - its own redis-server (never port 6379, never a system service; nothing saved);
#   - one rlproxy with two rules that never limit (key global, LIMIT per WINDOW): /local/
#     kept in the process, /shared/ with `shared: true` (one Lua script in Redis per request).
# Then, interleaved in the same run against the same rlproxy:
#     for conns in CONNS: for round in 1..ROUNDS: for rule in local shared: wrk -t1 -cCONNS ...
# and prints medians of req/s, p50 and p99 latency per rule, the difference shared − local, and
# what Redis saw (script calls, EVAL or EVALSHA, per request; its own µs per call; its CPU time
# per 1000 decisions, i.e. per 1000 shared requests, whatever number of scripts each runs), then a
# paired latency run (one connection alternating the two rules request by request).
# wrk counts non-2xx answers; with shared.on_error: deny any request Redis did not decide in time
# would be a 503 there, so "errors 0" also says every shared request was decided by Redis.
#
# Environment (defaults in brackets):
#   ROUNDS [5]  DURATION [4] (seconds per wrk run)  CONNS ["1 50"]  WORKERS [2] (rlproxy)
#   TIMEOUT [50ms] (shared.timeout)  PAIRS [5000] (paired-latency requests per rule)
#   LIMIT [1000] WINDOW [10ms] (the rule: key global, reject; must never limit)
#   UPSTREAM_LIMITS [follow] (both rules' upstream_limits; follow makes a shared rule number its
#   departures and hear every answer in Redis, ignore leaves one decision and one departure)
#   RLPROXY [src/rlproxy]
# Output: bench/out/shared-STAMP.txt (copied to bench/out/shared-latest.txt) and the logs in
# bench/out/shared-logs-STAMP/. Everything started here is stopped on exit, by PID.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
CONNS=${CONNS:-"1 50"}
WORKERS=${WORKERS:-2}
TIMEOUT=${TIMEOUT:-50ms}
PAIRS=${PAIRS:-5000}
# Never limits at this machine's rates (100,000/s), yet keeps the local window's ring small: the
# in-process limiter keeps admissions in a ring of up to `limit` entries and scans the expired
# ones on every decision (see bench/SHARED.md), so a huge limit would measure that instead.
LIMIT=${LIMIT:-1000}
UPSTREAM_LIMITS=${UPSTREAM_LIMITS:-follow}
WINDOW=${WINDOW:-10ms}

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$bench/.." && pwd)
RLPROXY=${RLPROXY:-$top/src/rlproxy}
LUA=$bench/request.lua

say() { printf '%s\n' "$*" >&2; }
die() { say "bench/shared.sh: $*"; exit 1; }

for v in ROUNDS DURATION WORKERS PAIRS LIMIT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
for c in $CONNS; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "CONNS: '$c' is not a positive integer"; done
for t in wrk nginx redis-server redis-cli python3 curl; do
    command -v "$t" >/dev/null || die "$t is not installed (Debian: wrk nginx-light redis-server python3 curl)"
done
[[ -x $RLPROXY ]] || die "no rlproxy at $RLPROXY (build it, or set RLPROXY)"
"$RLPROXY" --version >/dev/null 2>&1 || true

read -r -a conns <<<"$CONNS"
runs=$((${#conns[@]} * ROUNDS * 2))
say "bench/shared.sh: ${#conns[@]} connection counts ($CONNS) x $ROUNDS rounds x 2 rules = $runs wrk runs of ${DURATION}s (about $(((runs * (DURATION + 1) + 10) / 60))m$(((runs * (DURATION + 1) + 10) % 60))s)"

tmp=$(mktemp -d /tmp/rlproxy-bench-shared.XXXXXX)
chmod 755 "$tmp" # nginx workers (nobody) read the files
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$bench/out
mkdir -p "$out"
STARTED=()

stop_pid()
{
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup()
{
    local rc=$? p f
    trap - EXIT INT TERM
    for p in "${STARTED[@]}"; do stop_pid "$p"; done
    if [[ -d $tmp ]]; then
        mkdir -p "$out/shared-logs-$stamp"
        for f in "$tmp"/*.log "$tmp"/origin/error.log; do
            [[ -f $f ]] && cp "$f" "$out/shared-logs-$stamp/"
        done
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nobody listens on (bound and closed just now), never Redis' default
free_port()
{
    local p
    while :; do
        p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        [[ $p != 6379 ]] && { printf '%s\n' "$p"; return; }
    done
}

# wait_ready NAME PID CHECK...: poll CHECK until it succeeds, the process dies, or 15 s
wait_ready()
{
    local name=$1 pid=$2 i
    shift 2
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || die "$name exited at start-up: $(tail -3 "$tmp/$name.log" 2>/dev/null)"
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "$name not ready after 15 s: $(tail -3 "$tmp/$name.log" 2>/dev/null)"
}

# ---- origin: nginx, static 1 KiB file under both prefixes ------------------------------------------
ORIGIN_PORT=$(free_port)
mkdir -p "$tmp/www/local" "$tmp/www/shared" "$tmp/origin"
head -c 1024 /dev/urandom >"$tmp/www/local/1k"
cp "$tmp/www/local/1k" "$tmp/www/shared/1k"
chmod -R a+rX "$tmp/www"
d=$tmp/origin
cat >"$d/nginx.conf" <<EOF
daemon off;
master_process on;
user nobody nogroup;
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_processes 1;
worker_rlimit_nofile 65536;
events { worker_connections 8192; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    default_type application/octet-stream;
    client_body_temp_path $d/body; proxy_temp_path $d/proxy; fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        root $tmp/www;
    }
}
EOF
nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" >"$tmp/origin.log" 2>&1 &
ORIGIN_PID=$!
STARTED+=("$ORIGIN_PID")
wait_ready origin "$ORIGIN_PID" curl -sf -o /dev/null "http://127.0.0.1:$ORIGIN_PORT/local/1k"

# ---- redis-server, our own ---------------------------------------------------------------------------
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
    >"$tmp/redis.log" 2>&1 &
REDIS_PID=$!
STARTED+=("$REDIS_PID")
redis() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
wait_ready redis "$REDIS_PID" bash -c "[[ \$(redis-cli -h 127.0.0.1 -p $REDIS_PORT ping) == PONG ]]"
REDIS_VERSION=$(redis INFO server | tr -d '\r' | sed -n 's/^redis_version://p')

# ---- rlproxy: the same rule twice, local and shared ----------------------------------------------------
PROXY_PORT=$(free_port)
cat >"$tmp/rlproxy.yaml" <<EOF
listen: ["127.0.0.1:$PROXY_PORT"]
workers: $WORKERS
log:
  level: notice
  access: "off"
admin:
  listen: []
shared:
  redis: "redis://127.0.0.1:$REDIS_PORT/0"
  on_error: deny
  timeout: $TIMEOUT
rate_limits:
  - name: local
    match: { path_prefix: "/local/" }
    key: global
    limit: $LIMIT
    window: $WINDOW
    upstream_limits: $UPSTREAM_LIMITS
  - name: shared
    match: { path_prefix: "/shared/" }
    key: global
    limit: $LIMIT
    window: $WINDOW
    upstream_limits: $UPSTREAM_LIMITS
    shared: true
EOF
"$RLPROXY" -t -c "$tmp/rlproxy.yaml" >/dev/null 2>&1 ||
    die "config rejected (a build without hiredis?): $("$RLPROXY" -t -c "$tmp/rlproxy.yaml" 2>&1 | head -2)"
"$RLPROXY" -c "$tmp/rlproxy.yaml" >"$tmp/rlproxy.log" 2>&1 &
PROXY_PID=$!
STARTED+=("$PROXY_PID")
url() { printf 'http://127.0.0.1:%s/%s/1k' "$ORIGIN_PORT" "$1"; }
wait_ready rlproxy "$PROXY_PID" curl -sf -o /dev/null --noproxy '' -x "http://127.0.0.1:$PROXY_PORT" "$(url shared)"
curl -sf -o /dev/null --noproxy '' -x "http://127.0.0.1:$PROXY_PORT" "$(url local)" || die "local rule: request failed"

# ---- measurements ------------------------------------------------------------------------------------
# cpu_ticks PID: utime+stime of a process in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# every script a request runs (decision, departure, answer), whether sent by SHA or as its text
script_calls() { redis INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_eval\(sha\)\{0,1\}:calls=\([0-9]*\).*/\2/p' | awk '{n += $1} END {print n + 0}'; }
script_usec() { redis INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_\(eval\(sha\)\{0,1\}\):.*usec_per_call=\([0-9.]*\).*/\1 \3 µs/p' | paste -sd, - | sed 's/,/, /g'; }
HZ=$(getconf CLK_TCK)

results=$tmp/results.tsv
printf 'conns\tround\trule\treq_s\tp50_us\tp99_us\terrors\tredis_calls\tredis_cpu_ms\trequests\n' >"$results"

run_wrk()
{
    local c=$1 round=$2 rule=$3 line req dur p50 p99 errs calls0 calls1 cpu0 cpu1
    calls0=$(script_calls)
    cpu0=$(cpu_ticks "$REDIS_PID")
    line=$(wrk -t1 -c"$c" -d"${DURATION}s" --timeout 5s -s "$LUA" "http://127.0.0.1:$PROXY_PORT" \
        -- "$(url "$rule")" "127.0.0.1:$ORIGIN_PORT" 2>>"$tmp/wrk.log" | tee -a "$tmp/wrk.log" | grep '^RESULT') ||
        die "wrk failed (see $tmp/wrk.log)"
    calls1=$(script_calls)
    cpu1=$(cpu_ticks "$REDIS_PID")
    req=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$line")
    dur=$(sed -n 's/.* duration_us=\([0-9]*\).*/\1/p' <<<"$line")
    p50=$(sed -n 's/.* p50_us=\([0-9]*\).*/\1/p' <<<"$line")
    p99=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"$line")
    errs=$(awk '{e = 0; for (i = 1; i <= NF; i++) if ($i ~ /^(connect|read|write|status|timeout)=/) {split($i, kv, "="); e += kv[2]} print e}' <<<"$line")
    printf '%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%.0f\t%s\n' "$c" "$round" "$rule" \
        "$(awk -v r="$req" -v d="$dur" 'BEGIN {print r * 1e6 / d}')" "$p50" "$p99" "$errs" \
        "$((calls1 - calls0))" "$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$HZ" 'BEGIN {print (b - a) * 1000 / hz}')" \
        "$req" >>"$results"
    say "  conns $c round $round $rule: $(tail -1 "$results" | cut -f4-9 | tr '\t' ' ') (req/s p50_us p99_us errors redis_calls redis_cpu_ms)"
}

# warm-up: upstream connections open, the script loaded, caches warm
wrk -t1 -c10 -d1s -s "$LUA" "http://127.0.0.1:$PROXY_PORT" -- "$(url shared)" "127.0.0.1:$ORIGIN_PORT" >/dev/null 2>&1 || true
wrk -t1 -c10 -d1s -s "$LUA" "http://127.0.0.1:$PROXY_PORT" -- "$(url local)" "127.0.0.1:$ORIGIN_PORT" >/dev/null 2>&1 || true

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for c in "${conns[@]}"; do
    for ((round = 1; round <= ROUNDS; round++)); do
        # alternate which rule goes first, so a drift over the run does not favour one
        if ((round % 2)); then order="local shared"; else order="shared local"; fi
        for rule in $order; do run_wrk "$c" "$round" "$rule"; done
    done
done
# Paired latency: one keep-alive connection alternating local and shared requests, so both see
# the same machine at the same moments; the difference of the medians is the added latency.
PAIRED=$(python3 - "$PROXY_PORT" "$ORIGIN_PORT" "$PAIRS" <<'PY'
import socket, statistics, sys, time
proxy, origin, pairs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", proxy))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
req = {r: ("GET http://127.0.0.1:%d/%s/1k HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
           % (origin, r, origin)).encode() for r in ("local", "shared")}
buf = b""
def one(rule):
    global buf
    t = time.perf_counter_ns()
    s.sendall(req[rule])
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, buf = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(buf) < length:
        buf += s.recv(65536)
    buf = buf[length:]
    return (time.perf_counter_ns() - t) / 1000.0, status
lat = {"local": [], "shared": []}
bad = 0
for i in range(200):  # warm-up
    one("local"); one("shared")
for i in range(pairs):
    for rule in (("local", "shared") if i % 2 else ("shared", "local")):
        us, status = one(rule)
        lat[rule].append(us)
        bad += status != 200
q = lambda v, p: sorted(v)[min(len(v) - 1, int(len(v) * p))]
l, sh = lat["local"], lat["shared"]
print("%d %.0f %.0f %.0f %.0f %.0f %.0f %d" % (pairs, statistics.median(l), q(l, 0.99),
      statistics.median(sh), q(sh, 0.99), statistics.median(sh) - statistics.median(l),
      q(sh, 0.99) - q(l, 0.99), bad))
PY
) || die "paired latency client failed"
say "  paired: $PAIRED (pairs local_p50 local_p99 shared_p50 shared_p99 added_p50 added_p99 non200)"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
USEC_PER_CALL=$(script_usec)
# the window itself: the one sorted set without a suffix (beside it: :seq, :pending, :departed,
# :unanswered, :learned, :hold, of other types)
KEY=$(redis --scan --pattern 'rlproxy:{shared:*' | grep -v '}:' | head -1)
ZCARD=$([[ -n $KEY ]] && redis ZCARD "$KEY" || echo 0)
MEM=$([[ -n $KEY ]] && redis MEMORY USAGE "$KEY" || echo 0)
kill -0 "$PROXY_PID" 2>/dev/null || die "rlproxy died during the run: $(tail -3 "$tmp/rlproxy.log")"
DOWN=$(grep -c 'Redis unavailable' "$tmp/rlproxy.log" || true)

# ---- report -------------------------------------------------------------------------------------------
report=$out/shared-$stamp.txt
python3 - "$results" "$ROUNDS" "$DURATION" "$WORKERS" "$TIMEOUT" "$REDIS_VERSION" "$USEC_PER_CALL" \
    "$ZCARD" "$MEM" "$DOWN" "$(nproc)" "$LOAD_BEFORE" "$LOAD_AFTER" "$PAIRED" "$LIMIT" "$WINDOW" \
    "$UPSTREAM_LIMITS" >"$report" <<'PY'
import csv, statistics, sys
(path, rounds, duration, workers, timeout, rver, usec, zcard, mem, down, ncpu, load0,
 load1, paired, limit, window, upstream) = sys.argv[1:]
rows = list(csv.DictReader(open(path), delimiter="\t"))
def med(c, rule, k):
    return statistics.median(float(r[k]) for r in rows if r["conns"] == c and r["rule"] == rule)
def tot(c, rule, k):
    return sum(float(r[k]) for r in rows if r["conns"] == c and r["rule"] == rule)
print("bench/shared.sh: rlproxy (%s workers), one never-limiting rule (key global, limit %s per %s,"
      " upstream_limits: %s)" % (workers, limit, window, upstream))
print("kept in the process (local) vs in Redis %s (shared: true, shared.timeout %s, on_error deny);"
      % (rver, timeout))
print("1 KiB GETs from an nginx origin, wrk -t1, %s rounds x %s s per rule, interleaved; %s CPUs"
      % (rounds, duration, ncpu))
print("load average %s before, %s after (other work on the machine skews every figure)"
      % (load0, load1))
print("medians over the rounds (req/s: lowest-highest round); errors = non-2xx + socket errors"
      " summed over the rounds\n")
print("| conns | rule | req/s | (range) | p50 | p99 | errors | Redis scripts per request | Redis CPU per 1000 decisions |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for c in sorted({r["conns"] for r in rows}, key=int):
    for rule in ("local", "shared"):
        rps = med(c, rule, "req_s")
        reqs = tot(c, rule, "requests")
        calls, cpu = tot(c, rule, "redis_calls"), tot(c, rule, "redis_cpu_ms")
        per = "%.2f" % (calls / reqs) if reqs else "-"
        cpu_k = "%.1f ms" % (cpu / reqs * 1000) if calls and reqs else "-"
        vals = [float(r["req_s"]) for r in rows if r["conns"] == c and r["rule"] == rule]
        print("| %s | %s | %.0f | %.0f-%.0f | %.0f µs | %.0f µs | %d | %s | %s |" % (
            c, rule, rps, min(vals), max(vals), med(c, rule, "p50_us"), med(c, rule, "p99_us"),
            tot(c, rule, "errors"), per, cpu_k))
print()
for c in sorted({r["conns"] for r in rows}, key=int):
    l, s = med(c, "local", "req_s"), med(c, "shared", "req_s")
    print("conns %s: shared/local req/s %.2f (%+.0f%%); added latency p50 %+.0f µs, p99 %+.0f µs"
          % (c, s / l, (s / l - 1) * 100, med(c, "shared", "p50_us") - med(c, "local", "p50_us"),
             med(c, "shared", "p99_us") - med(c, "local", "p99_us")))
n, lp50, lp99, sp50, sp99, ap50, ap99, bad = paired.split()
print("\npaired, one connection alternating the two rules request by request (%s each, Python"
      " client):\n  local p50 %s µs p99 %s µs; shared p50 %s µs p99 %s µs; added by Redis: p50 %+d µs,"
      " p99 %+d µs; non-200: %s" % (n, lp50, lp99, sp50, sp99, int(ap50), int(ap99), bad))
print("\nRedis: %s per call inside Redis (INFO commandstats); the window's sorted set held %s"
      " entries (%s bytes, MEMORY USAGE) at the end; \"Redis unavailable\" logged %s times"
      % (usec, zcard, mem, down))
PY
cp "$report" "$out/shared-latest.txt"
cat "$report"
say "bench/shared.sh: report in $report"

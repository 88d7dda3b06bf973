#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause (see LICENSE)
# bench/intercept.sh — what TLS interception costs (issue 10): handshakes per second through an
# intercepted CONNECT, the leaf-certificate cache hit rate, and 1 KiB requests per second inside one
# intercepted keep-alive tunnel against the same requests as plain HTTP through the same rlproxy,
# in the same run.
#
# It runs the "figures" case of tests/e2e/test_intercept (in make check it runs with small counts;
# its timings are printed, never asserted) with bigger counts, RUNS times, and prints the figure
# lines. Everything runs on 127.0.0.1: rlproxy (2 workers, access log to a file), and an in-process
# C origin (TLS with the harness's test certificate, or plain; 1 KiB responses, head and body in
# one write, TCP_NODELAY). The client is OpenSSL (handshakes) and libcurl (req/s), one thread
# unless stated.
#
#   handshake     fresh TCP connection, CONNECT 127.0.0.1:PORT, full TLS 1.3 handshake with the
#                 rlproxy leaf (no session resumption), GET / (1 KiB), close; sequential and 4
#                 threads. "opaque" is the same through a CONNECT that is not intercepted
#                 (localhost): the origin does the handshake and rlproxy only relays bytes.
#   req/s         one keep-alive connection, 20 warm-up requests then DURATION_MS of sequential
#                 GETs: "intercepted" = TLS client↔rlproxy and rlproxy↔origin; "plain" = HTTP
#                 both legs; "https:// target" = plain client connection, absolute-form
#                 https:// request, TLS rlproxy↔origin only. Interleaved ROUNDS times.
#
# Environment (defaults in brackets):
#   RUNS [3]  HANDSHAKES [2000] (per figure)  DURATION_MS [3000]  ROUNDS [3]
#   BUILD [the repository root]: a configured build tree; the test program is (re)built there
set -euo pipefail

RUNS=${RUNS:-3}
HANDSHAKES=${HANDSHAKES:-2000}
DURATION_MS=${DURATION_MS:-3000}
ROUNDS=${ROUNDS:-3}

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$bench/.." && pwd)
BUILD=${BUILD:-$top}

make -C "$BUILD" -s src/rlproxy tests/e2e/test_intercept >/dev/null

echo "# bench/intercept.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(openssl version), $(curl --version | head -1 | cut -d' ' -f1-3)"
echo "# HANDSHAKES=$HANDSHAKES DURATION_MS=$DURATION_MS ROUNDS=$ROUNDS"
for run in $(seq 1 "$RUNS"); do
    echo "## run $run"
    CK_RUN_CASE=figures CK_TIMEOUT_MULTIPLIER=5 \
        INTERCEPT_HANDSHAKES="$HANDSHAKES" INTERCEPT_DURATION_MS="$DURATION_MS" \
        INTERCEPT_ROUNDS="$ROUNDS" \
        RLPROXY_BIN="$BUILD/src/rlproxy" RLPROXY_SRCDIR="$top" \
        RLPROXY_ORIGIN="$top/tests/origin/origin.py" \
        "$BUILD/tests/e2e/test_intercept" 2>&1 |
        grep -E '^(intercepted|leaf cache|opaque|round|1 KiB|origin:|[0-9]+%:|.*:[FE]:)' || true
done

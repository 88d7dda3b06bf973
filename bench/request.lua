-- SPDX-License-Identifier: BSD-2-Clause (see LICENSE)
-- bench/request.lua — wrk script used by bench/run for every target.
--
-- wrk only speaks origin-form ("GET /path"); a forward proxy needs absolute-form
-- ("GET http://127.0.0.1:18080/1k HTTP/1.1") with the origin's Host. Arguments after `--`:
--   1: the request target: "http://127.0.0.1:18080/1k" for a forward proxy, "/1k" otherwise
--   2: the Host header value (the origin's host:port)
-- There is no request() function, so wrk builds the request once and replays the same bytes
-- (its fast "static" path): the script costs nothing per request.

function init(args)
    wrk.path = args[1] or wrk.path
    if args[2] then
        wrk.headers["Host"] = args[2]
    end
end

-- One machine-readable line for bench/run (latencies in microseconds).
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d max_us=%d " ..
        "connect=%d read=%d write=%d status=%d timeout=%d\n",
        summary.requests, summary.duration, summary.bytes,
        latency:percentile(50), latency:percentile(99), latency.max,
        e.connect, e.read, e.write, e.status, e.timeout))
end

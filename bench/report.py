#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause (see LICENSE)
"""bench/report.py — turn bench/run's raw results into the text table (and gnuplot input).

usage: report.py RESULTS.tsv STATUS.tsv HEADER.txt [PLOT_PREFIX]

RESULTS.tsv rows: kind workers size conns target round rps p50_us p99_us errors
                  connect read write status timeout   (errors is their sum, as wrk counts them)
  kind is "main" (the interleaved rounds) or "sweep" (the concurrency sweep for the plot);
  rps is -1 when wrk itself failed (counted as an error).
STATUS.tsv rows: workers size target rss_kb note   (rss_kb "-" when unknown; note "ok" or why not)

Medians over rounds for req/s, p50 and p99; errors are summed over rounds. One table per
(workers, size, connections) that the rounds measured; then, where they were measured, rlproxy
against nginx (req/s and p99, issue #19 item 3) and the named rlproxy cases against rl-norule
(issue #19 item 1). The plot takes the rounds' medians where the sweep did not run.
"""
import statistics
import sys
from collections import defaultdict

ORDER = ["direct", "rlproxy", "nginx", "squid", "tinyproxy",
         "rl-norule", "rl-global", "rl-client50", "rl-log"]
# issue #19 item 1: each named case against the same build with no rule and the access log off
CASE_GOALS = [("rl-global", "one key: global rule admitting everything", 0.97),
              ("rl-client50", "one key: client rule admitting everything, 50 clients", 0.97),
              ("rl-log", "access log on, to a file", 0.95)]
ERROR_KINDS = ["connect", "read", "write", "status >= 400", "timeout"]


def size_key(s):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    s = s.lower()
    return int(s[:-1]) * units[s[-1]] if s[-1] in units else int(s)


def fmt_ratio(a, b):
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}"


def main():
    results, status, header = sys.argv[1:4]
    plot_prefix = sys.argv[4] if len(sys.argv) > 4 else None

    runs = defaultdict(list)  # (kind, workers, size, conns, target) -> [(rps, p50, p99, errors)]
    for line in open(results):
        f = line.split()
        if len(f) != 15 or f[0] == "kind":
            continue
        kind, w, size, conns, target, _round, rps, p50, p99, err = f[:10]
        runs[(kind, int(w), size, int(conns), target)].append(
            (float(rps), float(p50), float(p99), int(err), tuple(int(x) for x in f[10:])))

    notes = {}
    for line in open(status):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 5:
            notes[(int(f[0]), f[1], f[2])] = (f[3], f[4])

    out = [open(header).read().rstrip("\n"), ""]
    groups = defaultdict(set)  # (workers, size, conns) -> targets measured or attempted
    main_conns = defaultdict(set)
    for (kind, w, size, conns, target) in runs:
        if kind == "main":
            groups[(w, size, conns)].add(target)
            main_conns[(w, size)].add(conns)
    for (w, size, target) in notes:
        if not main_conns[(w, size)]:
            groups[(w, size, 0)].add(target)
        for conns in main_conns[(w, size)]:
            # a target that did not start is listed at every point, the cases only at their own
            if not target.startswith("rl-") or conns == min(main_conns[(w, size)]):
                groups[(w, size, conns)].add(target)

    main_medians = {}  # (w, size, conns, target) -> median req/s, for the plot
    for (w, size, conns) in sorted(groups, key=lambda g: (g[0], size_key(g[1]), g[2])):
        targets = [t for t in ORDER if t in groups[(w, size, conns)]]
        targets += sorted(t for t in groups[(w, size, conns)] if t not in targets)
        med = {}
        rounds = 0
        for t in targets:
            r = runs.get(("main", w, size, conns, t), [])
            ok = [x for x in r if x[0] >= 0]
            rounds = max(rounds, len(r))
            if ok:
                main_medians[(w, size, conns, t)] = statistics.median(x[0] for x in ok)
                med[t] = (statistics.median(x[0] for x in ok),
                          statistics.median(x[1] for x in ok),
                          statistics.median(x[2] for x in ok),
                          sum(x[3] for x in r) + sum(1 for x in r if x[0] < 0))
        out.append(f"== {size} body, workers {w}: wrk -t1 -c{conns or '?'}, {rounds} rounds interleaved, "
                   f"median req/s, p50, p99; errors summed ==")
        out.append(f"{'target':<11} {'req/s':>9} {'x direct':>8} {'p50 ms':>8} {'p99 ms':>8} "
                   f"{'errors':>7} {'peak RSS':>9}  note")
        direct = med.get("direct", (None,))[0]
        for t in targets:
            rss_kb, note = notes.get((w, size, t), ("-", "ok"))
            rss = f"{int(rss_kb) / 1024:.1f} MiB" if rss_kb not in ("-", "") else "-"
            r = runs.get(("main", w, size, conns, t), [])
            kinds = [sum(x[4][i] for x in r) for i in range(5)]
            failed = sum(1 for x in r if x[0] < 0)
            detail = [f"{n} {k}" for n, k in zip(kinds, ERROR_KINDS) if n]
            if failed:
                detail.append(f"{failed} wrk runs failed")
            if detail:
                note = f"{note}; errors: " + ", ".join(detail)
            if t in med:
                rps, p50, p99, err = med[t]
                out.append(f"{t:<11} {rps:>9.0f} {fmt_ratio(rps, direct):>8} {p50 / 1000:>8.2f} "
                           f"{p99 / 1000:>8.2f} {err:>7} {rss:>9}  {note}")
            else:
                out.append(f"{t:<11} {'-':>9} {'-':>8} {'-':>8} {'-':>8} {'-':>7} {rss:>9}  {note}")
        measured = [t for t in targets if t in med]
        if "rlproxy" in med and "nginx" in med:
            rps_ratio = med["rlproxy"][0] / med["nginx"][0] if med["nginx"][0] > 0 else 0
            p99_ratio = med["rlproxy"][2] / med["nginx"][2] if med["nginx"][2] > 0 else 0
            out.append(f"rlproxy / nginx at {conns} connections: req/s {rps_ratio:.2f}x (goal >= 0.90), "
                       f"p99 {p99_ratio:.2f}x (goal <= 1.20)")
        if "rl-norule" in med:
            base = med["rl-norule"][0]
            for case, what, goal in CASE_GOALS:
                if case in med:
                    out.append(f"{case} / rl-norule ({what}): {fmt_ratio(med[case][0], base)}x "
                               f"(goal >= {goal:.2f})")
        if len(measured) > 1:
            out.append("req/s ratios (row / column):")
            out.append(f"{'':<11} " + " ".join(f"{t:>11}" for t in measured))
            for a in measured:
                out.append(f"{a:<11} " + " ".join(
                    f"{'-' if a == b else fmt_ratio(med[a][0], med[b][0]):>11}" for b in measured))
        out.append("")

    sweep = defaultdict(dict)  # (w, size) -> {(conns, target): rps}
    for (kind, w, size, conns, target), r in runs.items():
        if kind == "sweep":
            ok = [x[0] for x in r if x[0] >= 0]
            if ok:
                sweep[(w, size)][(conns, target)] = statistics.median(ok)
    if sweep:
        # the points the rounds measured (medians), for the targets the sweep has
        for (w, size, conns, target), rps in main_medians.items():
            if (w, size) in sweep and not target.startswith("rl-"):
                sweep[(w, size)].setdefault((conns, target), rps)
        out.append("== concurrency sweep (req/s; one run each, or the rounds' median where they ran) ==")
        for (w, size) in sorted(sweep, key=lambda g: (g[0], size_key(g[1]))):
            cells = sweep[(w, size)]
            targets = [t for t in ORDER if any(k[1] == t for k in cells)]
            conns_list = sorted({k[0] for k in cells})
            out.append(f"-- {size} body, workers {w}")
            out.append(f"{'conns':>6} " + " ".join(f"{t:>9}" for t in targets))
            for c in conns_list:
                out.append(f"{c:>6} " + " ".join(
                    f"{cells[(c, t)]:>9.0f}" if (c, t) in cells else f"{'-':>9}" for t in targets))
        out.append("")
    print("\n".join(out))

    if plot_prefix and sweep:
        write_plot(plot_prefix, sweep)


def write_plot(prefix, sweep):
    """PREFIX.dat (one gnuplot index per group) and PREFIX.gp (multiplot: rows sizes, cols workers)."""
    groups = sorted(sweep, key=lambda g: (size_key(g[1]), g[0]))
    sizes = sorted({g[1] for g in groups}, key=size_key)
    workers = sorted({g[0] for g in groups})
    targets = [t for t in ORDER if any(k[1] == t for g in groups for k in sweep[g])]
    with open(prefix + ".dat", "w") as dat:
        for g in groups:
            dat.write(f"# {g[1]} body, workers {g[0]}\n# conns " + " ".join(targets) + "\n")
            for c in sorted({k[0] for k in sweep[g]}):
                dat.write(f"{c} " + " ".join(
                    f"{sweep[g].get((c, t), float('nan')):.0f}" for t in targets) + "\n")
            dat.write("\n\n")
    with open(prefix + ".gp", "w") as gp:
        gp.write(f'set terminal pngcairo size {520 * len(workers)},{380 * len(sizes)} font ",9"\n')
        gp.write(f'set output "{prefix}.png"\n')
        gp.write(f"set multiplot layout {len(sizes)},{len(workers)} "
                 'title "rlproxy bench: throughput by concurrency (wrk -t1, 127.0.0.1)"\n')
        gp.write("set logscale x 10\nset xlabel 'connections'\nset ylabel 'req/s'\n"
                 "set grid\nset key top left\nset yrange [0:*]\nset datafile missing 'nan'\n")
        for idx, g in enumerate(groups):
            gp.write(f'set title "{g[1]} body, workers {g[0]}"\n')
            plots = [f'"{prefix}.dat" index {idx} using 1:{col + 2} with linespoints title "{t}"'
                     for col, t in enumerate(targets)]
            gp.write("plot " + ", \\\n     ".join(plots) + "\n")
        gp.write("unset multiplot\n")


if __name__ == "__main__":
    main()

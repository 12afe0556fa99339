#!/usr/bin/python3
"""Turns `medstream bench --csv` output into the Markdown tables of docs/evaluation.md.

One table per workload: rows are (job, load), columns the modes' median elapsed time (streams:
average batch time) with the slowdown against vanilla in parentheses.
"""
import csv
import sys
from collections import OrderedDict


def label(n):
    n = int(n)
    if n >= 1 << 20:
        return f"{n >> 20} MB"
    return f"{n >> 10} kB"


def main():
    rows = list(csv.DictReader(open(sys.argv[1])))
    modes = list(OrderedDict.fromkeys(r["mode"] for r in rows))
    for workload in OrderedDict.fromkeys(r["workload"] for r in rows):
        stream = workload.startswith("stream")
        what = "average batch time, ms (slowdown)" if stream else "elapsed, ms (slowdown)"
        print(f"### {workload} — {what}\n")
        print("| job | load | samples | " + " | ".join(modes) + " | process RSS MB |")
        print("|---|---|---:|" + "---:|" * len(modes) + "---:|")
        cells = OrderedDict()
        for r in rows:
            if r["workload"] != workload:
                continue
            cells.setdefault((r["job"], r["load_bytes"]), {})[r["mode"]] = r
        for (job, load), by_mode in cells.items():
            any_row = next(iter(by_mode.values()))
            out = [job, label(load), any_row["samples"]]
            for m in modes:
                r = by_mode.get(m)
                if not r:
                    out.append("")
                    continue
                v = float(r["avg_batch_ms"]) if stream else float(r["elapsed_s"]) * 1000
                cell = f"{v:.2f} ({float(r['slowdown_vs_vanilla']):.2f}×)"
                if r["real_time"] == "no":
                    cell += " behind"
                out.append(cell)
            p = by_mode.get("process")
            out.append(p["peak_rss_mb"] if p else "")
            print("| " + " | ".join(out) + " |")
        print()


if __name__ == "__main__":
    main()

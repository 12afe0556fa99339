#!/usr/bin/python3
"""Oracle for the data lake's tests: the same aggregates computed outside medstream.

    /usr/bin/python3 tools/lake_oracle.py FILE.csv QUERIES.json

QUERIES.json is a list of {"sql": ..., "k": 5} in medstream's SQL subset. COUNT, SUM, AVG, MIN
and MAX run in sqlite3 (the CSV loaded into an in-memory table with the same column types);
STDDEV (sample), MEDIAN and PERCENTILE (linear interpolation) are computed with pandas over the
rows sqlite3 selects. Groups with fewer than k rows are dropped, as the lake suppresses them.
Prints a JSON list of {"columns", "rows", "suppressed_groups"} in medstream's --json shape.
"""
import csv
import json
import re
import sqlite3
import sys

import pandas as pd


def main():
    path, spec = sys.argv[1], json.load(open(sys.argv[2]))
    df = pd.read_csv(path)
    db = sqlite3.connect(":memory:")
    df.to_sql("t", db, index=False)
    out = []
    for q in spec:
        sql, k = q["sql"], q.get("k", 5)
        m = re.match(r"SELECT (.*) FROM (\w+)( WHERE .*?)?( GROUP BY (.*))?$", sql, re.S | re.I)
        items = [s.strip() for s in re.split(r",(?![^(]*\))", m.group(1))]
        where = m.group(3) or ""
        groups = [g.strip() for g in m.group(5).split(",")] if m.group(5) else []
        gsel = ", ".join(groups) if groups else "1"
        keys = db.execute(f"SELECT {gsel}, COUNT(*) FROM t{where} GROUP BY {gsel} ORDER BY {gsel}")
        rows, suppressed = [], 0
        for key_row in keys.fetchall():
            key, n = key_row[:-1], key_row[-1]
            if n < k:
                suppressed += 1
                continue
            cond = " AND ".join(f"{g} = ?" for g in groups) or "1"
            params = list(key) if groups else []
            base = f"FROM t WHERE ({where[7:] if where else '1'}) AND {cond}"
            row = []
            for item in items:
                a = re.match(r"(\w+)\((\*|\w+)(?:,\s*([\d.]+))?\)", item)
                if not a:
                    row.append(db.execute(f"SELECT {item} {base}", params).fetchone()[0])
                    continue
                fn, col, p = a.group(1).upper(), a.group(2), a.group(3)
                if fn in ("COUNT", "SUM", "AVG", "MIN", "MAX"):
                    v = db.execute(f"SELECT {fn}({col}) {base}", params).fetchone()[0]
                else:
                    vals = pd.Series([r[0] for r in db.execute(f"SELECT {col} {base}", params)],
                                     dtype=float).dropna()
                    if fn == "STDDEV":
                        v = vals.std(ddof=1)
                    elif fn == "MEDIAN":
                        v = vals.quantile(0.5)
                    else:
                        v = vals.quantile(float(p) / 100)
                row.append(v)
            rows.append(row)
        out.append({"rows": rows, "suppressed_groups": suppressed})
    print(json.dumps(out))


if __name__ == "__main__":
    main()

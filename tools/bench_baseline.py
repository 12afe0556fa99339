#!/usr/bin/python3
"""The baseline a data scientist would write instead of medstream: pandas, numpy and scipy.

`medstream bench` runs it on the same samples as its own batch points, as a CSV of
"<epoch seconds>,<rr ms>" lines, and reports its time beside vanilla/inproc/process:

    /usr/bin/python3 tools/bench_baseline.py --job sdnn --input samples.csv --reps 3

Jobs, as medstream defines them (docs/hrv.md): windows of 300 s every 30 s aligned to absolute
time, RR kept when 300-2000 ms, a window reported when its beats cover >= 85 % of it;
  sdnn       the standard deviation (N-1) of the window's NN intervals (pandas rolling),
  hrv-bands  LF (0.04-0.15 Hz) and HF (0.15-0.4 Hz) power and LF/HF: cubic-spline resampling at
             4 Hz and Welch (Hann, 256 samples, 50 % overlap) per window (scipy).
(The ectopic-beat filter is not reproduced: a typical notebook stops at the range filter.)
Each repetition times reading the CSV through to the results in memory; importing pandas is
not timed. Prints one JSON line: {"elapsed_s": [...], "windows": N}.
"""
import argparse
import json
import time

import numpy as np
import pandas as pd
import scipy.interpolate
import scipy.signal

WIDTH, STEP, COVERAGE = 300.0, 30.0, 0.85


def load(path):
    df = pd.read_csv(path, header=None, names=["t", "rr"], dtype={"t": np.float64, "rr": np.float64})
    return df[(df.rr >= 300) & (df.rr <= 2000)]


def sdnn(df):
    # Rolling 300 s windows ending at each 30 s boundary: pandas' time-based rolling, then the
    # value at each boundary.
    s = pd.Series(df.rr.values, index=pd.to_datetime(df.t.values, unit="s"))
    std = s.rolling("300s", closed="left").std()
    covered = s.rolling("300s", closed="left").sum() / 1000.0
    ends = pd.date_range(s.index[0].ceil("30s"), s.index[-1].floor("30s"), freq="30s")
    at = std.reindex(ends, method="ffill")
    cov = covered.reindex(ends, method="ffill")
    return at[cov >= COVERAGE * WIDTH]


def bands(df):
    t = df.t.values
    rr = df.rr.values
    out = []
    k0 = int(np.ceil(t[0] / STEP))
    k1 = int(np.floor(t[-1] / STEP))
    lo = np.searchsorted(t, np.arange(k0, k1 + 1) * STEP)
    hi = np.searchsorted(t, np.arange(k0, k1 + 1) * STEP + WIDTH)
    for a, b in zip(lo, hi):
        if b - a < 8 or rr[a:b].sum() / 1000.0 < COVERAGE * WIDTH:
            continue
        tw, rw = t[a:b], rr[a:b]
        grid = np.arange(tw[0], tw[-1], 0.25)
        x = scipy.interpolate.CubicSpline(tw, rw)(grid)
        f, p = scipy.signal.welch(x, fs=4.0, window="hann", nperseg=min(256, len(x)),
                                  noverlap=min(128, len(x) // 2), detrend="constant")
        lf_mask = (f >= 0.04) & (f < 0.15)
        hf_mask = (f >= 0.15) & (f < 0.4)
        lf = np.trapz(p[lf_mask], f[lf_mask])
        hf = np.trapz(p[hf_mask], f[hf_mask])
        out.append((lf, hf, lf / hf if hf > 0 else np.nan))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--job", required=True, choices=["sdnn", "hrv-bands"])
    ap.add_argument("--input", required=True)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    elapsed = []
    windows = 0
    for _ in range(args.reps):
        start = time.perf_counter()
        df = load(args.input)
        result = sdnn(df) if args.job == "sdnn" else bands(df)
        elapsed.append(time.perf_counter() - start)
        windows = len(result)
    print(json.dumps({"elapsed_s": elapsed, "windows": windows}))


if __name__ == "__main__":
    main()

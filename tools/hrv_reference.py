#!/usr/bin/python3
"""Independent reference values for medstream's HRV metrics, computed with numpy and scipy.

Run with Debian's interpreter (python3-numpy, python3-scipy):
    /usr/bin/python3 tools/hrv_reference.py > tests/data/hrv_reference.json

Each metric is written from its documented definition (algo/hrv/types.h) with numpy/scipy primitives,
not translated from the C++: Welch is scipy.signal.welch on a scipy CubicSpline resampling,
Lomb-Scargle is scipy.signal.lombscargle, DFA fits each box with numpy.polyfit, sample entropy
counts template pairs directly. The C++ tests (algo/hrv/reference_test.cc) compare against the output.
"""
import json
import math
import os
import sys

import numpy as np
import scipy
import scipy.interpolate
import scipy.signal

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")

# Cleaning rule (algo/hrv/types.h, CleaningOptions).
MIN_RR, MAX_RR, ECTOPIC, RESET_AFTER = 300.0, 2000.0, 0.20, 5
# Sample entropy is quadratic here; larger records get null (the C++ test then only checks its own
# sorted algorithm against a quadratic count in hrv_test.cc).
SAMPEN_MAX_N = 20000


def read_rr(path, unit):
    values = np.loadtxt(path, comments="#", ndmin=1)
    rr_ms = values * 1000.0 if unit == "s" else values.astype(float)
    t = np.cumsum(rr_ms / 1000.0)
    return t, rr_ms


def read_csv(path, time_col, rr_col):
    with open(path) as f:
        header = [h.strip().lower() for h in f.readline().split(",")]
    data = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=(header.index(time_col),
                                                                     header.index(rr_col)))
    return data[:, 0].copy(), data[:, 1].copy()


def clean(t, rr, enabled=True):
    keep = []
    counts = dict(seen=len(t), accepted=0, invalid=0, time_order=0, range=0, ectopic=0)
    last_t, ref, run = -math.inf, None, 0
    for i in range(len(t)):
        if not (math.isfinite(t[i]) and math.isfinite(rr[i])) or rr[i] <= 0:
            counts["invalid"] += 1
            continue
        if not t[i] > last_t:
            counts["time_order"] += 1
            continue
        last_t = t[i]
        if enabled:
            if rr[i] < MIN_RR or rr[i] > MAX_RR:
                counts["range"] += 1
                continue
            if ref is not None and abs(rr[i] - ref) > ECTOPIC * ref:
                run += 1
                if run < RESET_AFTER:
                    counts["ectopic"] += 1
                    continue
        ref, run = rr[i], 0
        counts["accepted"] += 1
        keep.append(i)
    keep = np.array(keep, dtype=int)
    return t[keep], rr[keep], counts


def time_domain(nn):
    n = len(nn)
    out = {"n_beats": n, "mean_nn_ms": float(np.mean(nn)), "median_nn_ms": float(np.median(nn)),
           "sdnn_ms": float(np.std(nn, ddof=1)) if n >= 2 else None}
    d = np.diff(nn)
    out["rmssd_ms"] = float(np.sqrt(np.mean(d ** 2))) if len(d) >= 1 else None
    out["sdsd_ms"] = float(np.std(d, ddof=1)) if len(d) >= 2 else None
    if len(d):
        out["nn50"] = int(np.sum(np.abs(d) > 50))
        out["pnn50_pct"] = 100.0 * out["nn50"] / len(d)
        out["nn20"] = int(np.sum(np.abs(d) > 20))
        out["pnn20_pct"] = 100.0 * out["nn20"] / len(d)
    out["cvnn"] = out["sdnn_ms"] / out["mean_nn_ms"] if out["sdnn_ms"] is not None else None
    hr = 60000.0 / nn
    out.update(mean_hr_bpm=float(np.mean(hr)), min_hr_bpm=float(np.min(hr)),
               max_hr_bpm=float(np.max(hr)),
               std_hr_bpm=float(np.std(hr, ddof=1)) if n >= 2 else None)
    _, counts = np.unique(np.floor(nn / (1000.0 / 128.0)), return_counts=True)
    out["hrv_triangular_index"] = n / counts.max()
    return out


def band(f, p, lo, hi):
    mask = (f >= lo) & (f < hi)
    fb, pb = f[mask], p[mask]
    if len(fb) == 0:
        return None, None
    peak = float(fb[np.argmax(pb)]) if pb.max() > 0 else None
    return float(np.trapz(pb, fb)), peak


def spectral(t, nn, method):
    if method == "welch":
        rel = t - t[0]
        samples = int(math.floor(rel[-1] * 4.0)) + 1
        if samples < 256:
            return {}
        grid = np.arange(samples) / 4.0
        x = scipy.interpolate.CubicSpline(rel, nn, bc_type="not-a-knot")(grid)
        f, p = scipy.signal.welch(x, fs=4.0, window="hann", nperseg=256, noverlap=128,
                                  detrend="constant", scaling="density")
    else:
        rel = t - t[0]
        span = rel[-1]
        df = 1.0 / (4.0 * span)
        k = np.arange(1, int(0.4 / df) + 2)
        f = k * df
        f = f[f <= 0.4]
        y = nn - np.mean(nn)
        pls = scipy.signal.lombscargle(rel, y, 2 * np.pi * f, precenter=False, normalize=False)
        p = 2.0 * pls * span / len(nn)
    vlf, _ = band(f, p, 0.0033, 0.04)
    lf, lf_peak = band(f, p, 0.04, 0.15)
    hf, hf_peak = band(f, p, 0.15, 0.4)
    out = dict(vlf_ms2=vlf, lf_ms2=lf, hf_ms2=hf, total_power_ms2=vlf + lf + hf,
               lf_peak_hz=lf_peak, hf_peak_hz=hf_peak)
    out["lf_hf"] = lf / hf if hf > 0 else None
    out["lf_nu"] = 100 * lf / (lf + hf) if lf + hf > 0 else None
    out["hf_nu"] = 100 * hf / (lf + hf) if lf + hf > 0 else None
    return out


def dfa(nn, lo, hi):
    n = len(nn)
    if n < 2 * hi:
        return None
    y = np.cumsum(nn - np.mean(nn))
    sizes, flucts = [], []
    for box in range(lo, hi + 1):
        nb = n // box
        k = np.arange(box)
        rss = 0.0
        for b in range(nb):
            seg = y[b * box:(b + 1) * box]
            coef = np.polyfit(k, seg, 1)
            rss += np.sum((seg - np.polyval(coef, k)) ** 2)
        sizes.append(box)
        flucts.append(math.sqrt(rss / (nb * box)))
    return float(np.polyfit(np.log(sizes), np.log(flucts), 1)[0])


def sampen(x, m, r):
    n = len(x)
    if n < m + 2 or not r > 0:
        return None
    templates = n - m
    b = a = 0
    for i in range(templates - 1):
        dist = np.zeros(templates - i - 1)
        for k in range(m):
            dist = np.maximum(dist, np.abs(x[i + 1 + k:templates + k] - x[i + k]))
        match_m = dist <= r
        b += int(np.sum(match_m))
        last = np.abs(x[i + 1 + m:templates + m] - x[i + m]) <= r
        a += int(np.sum(match_m & last))
    if a == 0 or b == 0:
        return None
    return -math.log(a / b)


def metrics(t, nn, method="welch"):
    out = time_domain(nn)
    out.update(spectral(t, nn, method))
    if out.get("sdsd_ms") is not None:
        sdnn, sdsd = out["sdnn_ms"], out["sdsd_ms"]
        out["sd1_ms"] = math.sqrt(0.5 * sdsd ** 2)
        out["sd2_ms"] = math.sqrt(2 * sdnn ** 2 - 0.5 * sdsd ** 2)
        out["sd1_sd2"] = out["sd1_ms"] / out["sd2_ms"]
    out["dfa_alpha1"] = dfa(nn, 4, 16)
    out["dfa_alpha2"] = dfa(nn, 16, 64)
    if len(nn) <= SAMPEN_MAX_N:  # otherwise left out: not compared
        out["sampen"] = sampen(nn, 2, 0.2 * out["sdnn_ms"])
    return out


def windows(t, nn, width=300.0, step=30.0, min_coverage=0.85):
    rows = []
    k = int(math.floor((t[0] - width) / step))
    while k * step <= t[-1]:
        start = k * step
        sel = (t >= start) & (t < start + width)
        if sel.any():
            coverage = float(np.sum(nn[sel])) / (width * 1000.0)
            if coverage >= min_coverage:
                row = {"t_start": start, "t_end": start + width, "coverage": coverage}
                row.update(metrics(t[sel], nn[sel]))
                rows.append(row)
        k += 1
    return rows


CASES = [
    # name, file, how to read, clean, spectral method, with windows
    ("mitdb_100", "rr/mitdb_100_rr.csv", ("csv", "beat_time_s", "rr_ms"), True, "welch", True),
    ("mitdb_100_lomb", "rr/mitdb_100_rr.csv", ("csv", "beat_time_s", "rr_ms"), True, "lomb", False),
    ("mitdb_105", "rr/mitdb_105_rr.csv", ("csv", "beat_time_s", "rr_ms"), True, "welch", True),
    ("exercise", "rr/rhenanbartels_exercise_rri_ms.txt", ("rr", "ms"), True, "welch", True),
    ("exercise_raw", "rr/rhenanbartels_exercise_rri_ms.txt", ("rr", "ms"), False, "welch", False),
    ("exercise_lomb", "rr/rhenanbartels_exercise_rri_ms.txt", ("rr", "ms"), True, "lomb", False),
    ("noisy", "rr/rhenanbartels_noisy_rri_ms.txt", ("rr", "ms"), True, "welch", True),
    ("healthy_007", "rr/physionet_rr_healthy_subjects_007_ms.txt", ("rr", "ms"), True, "welch",
     False),
    ("chf201", "rr/chf2db_chf201_rr_secs.txt", ("rr", "s"), True, "welch", False),
]


def main():
    cases = []
    for name, rel, how, enabled, method, with_windows in CASES:
        path = os.path.join(DATA, rel)
        if how[0] == "csv":
            t, rr = read_csv(path, how[1], how[2])
            read = {"format": "csv", "time_col": how[1], "rr_col": how[2]}
        else:
            t, rr = read_rr(path, how[1])
            read = {"format": "rr", "unit": how[1]}
        tc, nn, counts = clean(t, rr, enabled)
        case = {"name": name, "file": rel, "read": read, "clean": enabled, "spectral": method,
                "cleaning": counts, "record": metrics(tc, nn, method)}
        if with_windows:
            case["windows"] = windows(tc, nn)
        cases.append(case)
        print(f"{name}: {len(nn)} NN, {len(case.get('windows', []))} windows", file=sys.stderr)
    json.dump({"generator": "tools/hrv_reference.py", "numpy": np.__version__,
               "scipy": scipy.__version__, "cases": cases}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

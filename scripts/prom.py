"""Reads Prometheus histograms from /metrics text, for the benchmark reports."""
import re


def histogram(text, name, labels=""):
    """Cumulative buckets [(le, count)] of a Prometheus histogram."""
    buckets = []
    pattern = re.compile(rf'^{name}_bucket\{{{labels}le="([^"]+)"\}} (\S+)$')
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets.append((le, float(m.group(2))))
    return buckets


def delta(after, before):
    b = dict(before)
    return [(le, c - b.get(le, 0.0)) for le, c in after]


def quantile(buckets, q):
    """Linear interpolation inside the bucket holding quantile q (as Prometheus does)."""
    total = buckets[-1][1]
    if total == 0:
        return float("nan")
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
    return prev_le

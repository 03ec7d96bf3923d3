"""Summarizes scripts/bench-latency.sh's runs as Markdown for BENCHMARKS.md.

For each run: stalls, startup, the rung played, glass-to-glass by the clock burnt into the
picture (tesseract reads the saved picture bottoms) and by program date-time, the player's own
latency, and the budget's stages: the origin's publish lag over the run (its histogram), the
part target and PART-HOLD-BACK of the playlist, and how long parts took to reach the player.
"""
import json
from datetime import datetime
import re
import statistics
import subprocess
import sys
from pathlib import Path

from prom import delta, histogram, quantile

CLOCK = re.compile(r"(\d\d):(\d\d):(\d\d)[.,:](\d\d\d)")
DAY_MS = 86_400_000


def read_clock(png):
    """The UTC clock burnt into a picture, as milliseconds of the day, or None."""
    text = subprocess.run(
        ["tesseract", str(png), "stdout", "--psm", "7", "-c", "tessedit_char_whitelist=0123456789:.UTC "],
        capture_output=True, text=True, check=False,
    ).stdout
    m = CLOCK.search(text.replace(" ", ""))
    if not m:
        return None
    h, mi, s, ms = (int(g) for g in m.groups())
    return ((h * 60 + mi) * 60 + s) * 1000 + ms


def since(later_ms, earlier_ms):
    """Seconds from one time of day to a later one; None past a minute (a misread digit)."""
    diff = (later_ms - earlier_ms) % DAY_MS
    if diff > DAY_MS // 2:
        diff -= DAY_MS
    return diff / 1000 if abs(diff) < 60_000 else None


def clock_g2g(directory):
    """Seconds between taking each saved picture and the UTC clock shown in it."""
    values = []
    for png in sorted(Path(directory).glob("clock-*.png")):
        shown = read_clock(png)
        taken = int(png.stem.split("-")[1]) % DAY_MS
        d = since(taken, shown) if shown is not None else None
        if d is not None:
            values.append(d)
    return values


def pdt_minus_clock(directory):
    """For the first frame of each saved segment: its program date-time − the clock it shows."""
    values = []
    for png in sorted(Path(directory).glob("first-frame-*.png")):
        shown = read_clock(png)
        pdt = datetime.fromisoformat(png.stem[len("first-frame-"):].replace("Z", "+00:00"))
        dated = (pdt.hour * 3600 + pdt.minute * 60 + pdt.second) * 1000 + pdt.microsecond // 1000
        d = since(dated, shown) if shown is not None else None
        if d is not None:
            values.append(d)
    return values


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def fmt(v, unit="s", digits=2):
    return "–" if v is None else f"{v:.{digits}f} {unit}"


def playlist_timing(path):
    text = Path(path).read_text() if Path(path).exists() else ""
    part = re.search(r"PART-TARGET=([\d.]+)", text)
    phb = re.search(r"PART-HOLD-BACK=([\d.]+)", text)
    return (float(part.group(1)) if part else None, float(phb.group(1)) if phb else None)


def main(out):
    out = Path(out)
    print("| source | player | protocol | stalls | startup | rung played | glass-to-glass p50 / p95 (clock) "
          "| glass-to-glass p50 / p95 (PDT) | player latency p50 | publish lag p50 | part fetch p50 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    timing = {}
    for source_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        timing[source_dir.name] = playlist_timing(source_dir / "playlist.m3u8")
        for run in sorted(source_dir.glob("*.json")):
            r = json.loads(run.read_text())
            player, protocol = run.stem.split("-", 1)
            if r.get("failed"):
                print(f"| {source_dir.name} | {player} | {protocol} | run failed | | | | | | | |")
                continue
            clock = clock_g2g(source_dir / run.stem)
            played = [h for h in r["perSecond"] if h]
            rung = f"{statistics.mode(played)}p" if played else "–"
            on_top = sum(1 for h in played if h == r["topHeight"])
            before = (source_dir / f"{run.stem}.before.prom").read_text()
            after = (source_dir / f"{run.stem}.after.prom").read_text()
            name = "corral_origin_publish_lag_seconds"
            lag = delta(histogram(after, name, r'stream="[^"]+",'), histogram(before, name, r'stream="[^"]+",'))
            lag_p50 = quantile(lag, 0.5) if lag and lag[-1][1] > 0 else None
            stalls = f"{r['stalls']}" + (f" (longest {r['longestStallMs']} ms)" if r["stalls"] else "")
            g = r["glassToGlass"]
            print(
                f"| {source_dir.name} | {player} | {protocol} | {stalls} | {r['startupMs']} ms "
                f"| {rung} ({on_top} of {len(played)} s at {r['topHeight']}p) "
                f"| {fmt(pct(clock, 50))} / {fmt(pct(clock, 95))} ({len(clock)} reads) "
                f"| {fmt(g['p50'])} / {fmt(g['p95'])} | {fmt(r['latency']['p50'])} "
                f"| {fmt(lag_p50 and lag_p50 * 1000, 'ms', 0)} | {fmt(r['partFetchMs']['p50'], 'ms', 0)} |"
            )
    for source, (part, phb) in timing.items():
        offsets = pdt_minus_clock(out / source / "segments")
        dating = (f"; a segment's program date-time is {fmt(statistics.median(offsets) * 1000, 'ms', 0)} after the "
                  f"clock in its first frame (median of {len(offsets)})") if offsets else ""
        print(f"\n{source}: PART-TARGET {part} s, PART-HOLD-BACK {phb} s{dating}")


if __name__ == "__main__":
    main(sys.argv[1])

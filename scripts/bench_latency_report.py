"""Summarizes scripts/bench-latency.sh's runs as Markdown for BENCHMARKS.md.

For each run: stalls, startup, the rung played, glass-to-glass by the clock burnt into the
picture (tesseract reads the saved picture bottoms) and by program date-time, the player's own
latency, and the budget's stages: the origin's publish lag over the run (its histogram), the
part target and PART-HOLD-BACK of the playlist, and how long parts took to reach the player.
"""
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

from prom import delta, histogram, quantile

CLOCK = re.compile(r"(\d\d):(\d\d):(\d\d)[.,:](\d\d\d)")
DAY_MS = 86_400_000


def clock_g2g(directory):
    """Seconds between taking each saved picture and the UTC clock shown in it."""
    values = []
    for png in sorted(Path(directory).glob("clock-*.png")):
        taken = int(png.stem.split("-")[1])
        text = subprocess.run(
            ["tesseract", str(png), "stdout", "--psm", "7", "-c", "tessedit_char_whitelist=0123456789:.UTC "],
            capture_output=True, text=True, check=False,
        ).stdout
        m = CLOCK.search(text.replace(" ", ""))
        if not m:
            continue
        h, mi, s, ms = (int(g) for g in m.groups())
        shown = ((h * 60 + mi) * 60 + s) * 1000 + ms
        diff = (taken % DAY_MS - shown) % DAY_MS
        # Over a minute is a misread digit, not a latency.
        if diff < 60_000:
            values.append(diff / 1000)
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
        print(f"\n{source}: PART-TARGET {part} s, PART-HOLD-BACK {phb} s")


if __name__ == "__main__":
    main(sys.argv[1])

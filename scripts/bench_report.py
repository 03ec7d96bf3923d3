"""Summarizes the files scripts/bench-origin.sh collected as Markdown for BENCHMARKS.md."""
import json
import statistics
import sys
from pathlib import Path

from prom import delta, histogram, quantile

out, runs, viewers, watch = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]


print("| ladder | runs | realtime factor (median) | CPU cores at real time (median) |")
print("|---|---|---|---|")
for ladder in ("origin", "local"):
    results = [json.loads((out / f"transcoder-{ladder}-{r}.json").read_text()) for r in range(1, runs + 1)]
    rtf = statistics.median(r["realtime_factor"] for r in results)
    cores = statistics.median(r["cores_at_realtime"] for r in results)
    names = "/".join(n for n, _ in results[0]["frames"])
    print(f"| conf/{ladder}.yaml ({names}) | {runs} | {rtf:.2f}x | {cores:.2f} |")

v = json.loads((out / "viewers.json").read_text())
before = (out / "metrics-before.txt").read_text()
after = (out / "metrics-after.txt").read_text()
lag = delta(histogram(after, "corral_origin_publish_lag_seconds", 'stream="demo",'),
            histogram(before, "corral_origin_publish_lag_seconds", 'stream="demo",'))
wake = delta(histogram(after, "corral_origin_blocking_wake_seconds"),
             histogram(before, "corral_origin_blocking_wake_seconds"))
print()
print(f"Live, conf/local.yaml, {viewers} LL-HLS viewers on 720p for {watch} s:")
print()
print("| measure | p50 | p99 | max | samples |")
print("|---|---|---|---|---|")
for q, label in ((v["playlist_lag_us"], "playlist lag (client: media end -> playlist listing the part)"),
                 (v["part_lag_us"], "part lag (client: media end -> hinted part's last byte)"),
                 (v["by_kind"]["blocking_playlist"]["latency_us"], "blocking reload held (client)")):
    print(f"| {label} | {q['p50'] / 1000:.1f} ms | {q['p99'] / 1000:.1f} ms | {q['max'] / 1000:.1f} ms | {q['count']} |")
print(f"| publish lag (server histogram, interpolated) | {quantile(lag, 0.5) * 1000:.1f} ms | "
      f"{quantile(lag, 0.99) * 1000:.1f} ms | | {int(lag[-1][1])} |")
print(f"| blocking wake-up delay (server histogram, interpolated) | {quantile(wake, 0.5) * 1000:.2f} ms | "
      f"{quantile(wake, 0.99) * 1000:.2f} ms | | {int(wake[-1][1])} |")
print()
print(f"Blocking statuses: {v['by_kind']['blocking_playlist']['statuses']}; parts fetched: {v['by_kind']['part']['requests']}; "
      f"stalls: {v['stalls']}; errors: {v['errors'] or 'none'}")
rss = dict(line.split(":") for line in (out / "origin-rss.txt").read_text().splitlines())
ff = (out / "ffmpeg-rss.txt").read_text().split(":")[-1].strip() if (out / "ffmpeg-rss.txt").exists() else "?"
print(f"Origin RSS with one stream: {rss['VmRSS'].strip()} (peak {rss['VmHWM'].strip()}); its ffmpeg child: {ff}")

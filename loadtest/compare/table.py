"""The comparison's Markdown table, from the JSON reports compare.sh collected.

    table.py DIR MACHINE COMMAND      prints the section (between its markers)
    table.py --splice FILE SECTION    puts SECTION in FILE in place of the marked one (or at
                                      the end when FILE has none)

DIR holds herd-{server}-{round}.json and hits-{server}-{object}-{round}.json (the reports of
`loadtest herd --format json` and `loadtest hits --format json`) and memory.jsonl. Each cell is
the median over the rounds; origin requests are the most any round saw (1 is the goal).
"""
import datetime
import json
import re
import statistics
import sys
from pathlib import Path

BEGIN = "<!-- begin: loadtest/compare/compare.sh writes the lines down to the end marker -->"
END = "<!-- end: loadtest/compare/compare.sh -->"
SERVERS = [("edge", "edge"), ("nginx", "nginx"), ("varnish", "Varnish")]
OBJECTS = [
    ("blocking_playlist", "blocking playlist"),
    ("hinted_part", "hinted part"),
    ("segment", "segment"),
]
HIT_OBJECTS = [("master", "multivariant playlist"), ("part", "part, 720p")]


def ms(v):
    """Milliseconds with the digits that matter."""
    if v is None:
        return "n/a"
    if v < 10:
        return f"{v:.2f} ms"
    if v < 100:
        return f"{v:.1f} ms"
    return f"{v:.0f} ms"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    r = a / b
    return f"{r:.2g}" if r < 0.1 else f"{r:.2f}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def herds(d):
    """{(server, object): {field: [per round]}}"""
    out = {}
    for f in sorted(d.glob("herd-*.json")):
        report = json.loads(f.read_text())
        server = f.stem.split("-")[1]
        for h in report["herds"]:
            cell = out.setdefault((server, h["object"]), {})
            for k in ("origin_requests", "leader_ms", "wake_p50_ms", "wake_p99_ms", "done_p99_ms"):
                cell.setdefault(k, []).append(h[k])
            cell.setdefault("errors", []).append(h["errors"] + (h["clients"] - h["ok"]))
            cell["clients"] = h["clients"]
    return out


def hits(d):
    """{(server, object): {field: [per round]}}"""
    out = {}
    for f in sorted(d.glob("hits-*.json")):
        report = json.loads(f.read_text())
        _, server, obj, _ = f.stem.split("-")
        cell = out.setdefault((server, obj), {})
        for k in ("requests_per_second", "server_cpu_us_per_request", "p50_ms", "p99_ms", "errors"):
            cell.setdefault(k, []).append(report[k])
    return out


def section(d, machine, command):
    h, t = herds(d), hits(d)
    memory = {}
    mem_file = d / "memory.jsonl"
    if mem_file.exists():
        for line in mem_file.read_text().splitlines():
            m = json.loads(line)
            memory[m["server"]] = m["rss_kb"]
    rounds = max((len(c["wake_p50_ms"]) for c in h.values()), default=0)
    clients = next((c["clients"] for c in h.values()), 0)
    names = " / ".join(label for _, label in SERVERS)
    lines = [
        BEGIN,
        f"Run of {datetime.date.today().isoformat()}. Machine: {machine}. The three caches, the",
        "origin (test pattern, 720p + 360p + audio) and the load generator share the machine.",
        f"Command: `{command}`; {rounds} round{'s' if rounds != 1 else ''}, the servers' order",
        "rotating each round; medians of the rounds.",
        "",
        f"Herds of {clients} players (origin requests: the most in one round; woken after the",
        "leader: how much later than the first player's the others' response headers arrived;",
        "last byte: the same for the end of the body):",
        "",
        f"| object | origin requests ({names}) | woken after the leader, p50 ({names}) "
        f"| p99 ({names}) | last byte, p99 ({names}) | p99 edge/nginx | p99 edge/Varnish | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for obj, label in OBJECTS:
        cells = [h.get((s, obj)) for s, _ in SERVERS]
        if not any(cells):
            continue

        def col(field, fmt, agg=median):
            return " / ".join(fmt(agg(c[field])) if c else "n/a" for c in cells)

        def most(values):
            values = [v for v in values if v is not None]
            return max(values) if values else None

        p99 = [median(c["wake_p99_ms"]) if c else None for c in cells]
        failed = sum(sum(c["errors"]) for c in cells if c)
        lines.append(
            f"| {label} | {col('origin_requests', lambda v: 'n/a' if v is None else f'{v:.0f}', most)} "
            f"| {col('wake_p50_ms', ms)} | {col('wake_p99_ms', ms)} | {col('done_p99_ms', ms)} "
            f"| {ratio(p99[0], p99[1])} | {ratio(p99[0], p99[2])} | {failed} |"
        )
    lines += [
        "",
        "Cache hits, HTTP/1.1 keep-alive (`loadtest hits`; server CPU: all of its processes,",
        "per request answered):",
        "",
        f"| object | requests/s ({names}) | server CPU per request ({names}) "
        "| requests/s edge/nginx | edge/Varnish | CPU edge/nginx | edge/Varnish | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for obj, label in HIT_OBJECTS:
        cells = [t.get((s, obj)) for s, _ in SERVERS]
        if not any(cells):
            continue
        rps = [median(c["requests_per_second"]) if c else None for c in cells]
        cpu = [median(c["server_cpu_us_per_request"]) if c else None for c in cells]
        failed = sum(sum(c["errors"]) for c in cells if c)
        lines.append(
            f"| {label} | {' / '.join('n/a' if v is None else f'{v:,.0f}' for v in rps)} "
            f"| {' / '.join('n/a' if v is None else f'{v:.1f} µs' for v in cpu)} "
            f"| {ratio(rps[0], rps[1])} | {ratio(rps[0], rps[2])} "
            f"| {ratio(cpu[0], cpu[1])} | {ratio(cpu[0], cpu[2])} | {failed} |"
        )
    if memory:
        lines += [
            "",
            "Resident memory after the run (nginx: master and workers; Varnish: manager and child):",
            "",
            "| " + " | ".join(label for _, label in SERVERS) + " |",
            "|" + "---|" * len(SERVERS),
            "| " + " | ".join(f"{memory.get(s, 0) / 1024:.1f} MB" for s, _ in SERVERS) + " |",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def splice(path, new):
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: new, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + new
    path.write_text(text)


def main(argv):
    if len(argv) == 3 and argv[0] == "--splice":
        splice(Path(argv[1]), Path(argv[2]).read_text())
    elif len(argv) == 3:
        sys.stdout.write(section(Path(argv[0]), argv[1], argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

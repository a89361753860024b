"""The fleet benchmark's report: per N, the medians of the interleaved pairs with their spread,
the targets met or missed, and the plot (bench/results/fleet.md, fleet.png)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.workload import ROOT

RESULTS = ROOT / "bench" / "results"
Record = Mapping[str, Any]
# The requests that are the operator's own (the rest are the controller-manager's and the
# harness's, the same in a bare run).
OURS = (
    "deployments APPLY",
    "deployments PATCH",
    "serviceprofiles/status PATCH",
    "serviceprofiles/status APPLY",
    "events POST",
    "events PATCH",
    "pods LIST",
    "deployments LIST",
    "serviceprofiles LIST",
)


def load(globs: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Records from bench/results/ (``fleet-*.json`` unless globs are given), oldest first."""
    paths: set[Path] = set()
    for pattern in globs or ["fleet-*.json"]:
        paths |= set(RESULTS.glob(pattern))
    records = [json.loads(p.read_text()) for p in sorted(paths)]
    return [r for r in records if "pair" in r]  # the interleaved harness's records


def _time(record: Record) -> float | None:
    """Time to done: the operator's status says Compliant; bare's last write returned."""
    if record.get("error"):
        return None
    value = record.get("status_s") if record["contender"] == "operator" else record.get("converge_s")
    return None if value is None else float(value)


def _cpu_per_1000(record: Record) -> float | None:
    cpu = record.get("cpu_s")
    return None if cpu is None or record.get("error") else float(cpu) * 1000 / record["n"]


def _group(records: Sequence[Record]) -> dict[tuple[int, int, bool], list[Record]]:
    groups: dict[tuple[int, int, bool], list[Record]] = {}
    for r in records:
        groups.setdefault((r["n"], r.get("namespaces", 1), bool(r.get("from_start"))), []).append(r)
    return dict(sorted(groups.items()))


def _spread(values: Sequence[float], fmt: str = ".2f") -> str:
    if not values:
        return "n/a"
    median = statistics.median(values)
    if len(values) == 1:
        return format(median, fmt)
    return f"{median:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def _pairs(group: Sequence[Record]) -> list[tuple[Record, Record]]:
    by_pair: dict[int, dict[str, Record]] = {}
    for r in group:
        by_pair.setdefault(r["pair"], {})[r["contender"]] = r
    return [(p["bare"], p["operator"]) for _, p in sorted(by_pair.items()) if "bare" in p and "operator" in p]


def summary(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per (N, layout): medians over the pairs, and the spread."""
    rows = []
    for (n, namespaces, from_start), group in _group(records).items():
        pairs = _pairs(group)
        ratios = [o / b for b, o in ((_time(b), _time(o)) for b, o in pairs) if b and o]
        cpu_ratios = [o / b for b, o in ((_cpu_per_1000(b), _cpu_per_1000(o)) for b, o in pairs) if b and o]
        ours = [r for r in group if r["contender"] == "operator" and not r.get("error")]
        bare = [r for r in group if r["contender"] == "bare" and not r.get("error")]
        first = next((r for r in ours if r.get("idle")), None)
        restart = next((r["restart"] for r in ours if r.get("restart")), None)
        rows.append(
            {
                "n": n,
                "namespaces": namespaces,
                "from_start": from_start,
                "pairs": len(pairs),
                "bare_s": [t for r in bare if (t := _time(r)) is not None],
                "written_s": [float(r["converge_s"]) for r in ours if r.get("converge_s") is not None],
                "operator_s": [t for r in ours if (t := _time(r)) is not None],
                "timeouts": sum(bool(r.get("timed_out")) for r in ours),
                "ratio": ratios,
                "cpu_operator": [c for r in ours if (c := _cpu_per_1000(r)) is not None],
                "cpu_bare": [c for r in bare if (c := _cpu_per_1000(r)) is not None],
                "cpu_ratio": cpu_ratios,
                "writes_per_deployment": [float(r["writes_per_deployment"]) for r in ours],
                "requests_operator": _requests_per_deployment(ours),
                "requests_bare": _requests_per_deployment(bare),
                "rss_mib": [float(r["rss_mib"]) for r in ours if r.get("rss_mib")],
                "hwm_mib": [float(r["hwm_mib"]) for r in ours if r.get("hwm_mib")],
                "idle": None if first is None else first["idle"],
                "quiet": None if first is None else first["quiet"],
                "drift": next((r["drift"] for r in ours if r.get("drift")), None),
                "restart": restart,
            }
        )
    return rows


def _requests_per_deployment(records: Sequence[Record]) -> dict[str, float]:
    """The median count per Deployment of each "resource verb" over the runs."""
    keys = {k for r in records for k in r.get("requests", {})}
    return {
        k: statistics.median(r.get("requests", {}).get(k, 0) / r["n"] for r in records)
        for k in sorted(keys)
        if records
    }


def _layout(row: Mapping[str, Any]) -> str:
    text = f"{row['namespaces']} ns" if row["namespaces"] > 1 else "1 ns"
    return text + (", from start" if row["from_start"] else "")


def _grid(header: str, rows: Iterable[Sequence[str]]) -> str:
    """A markdown table: ``header`` (its cells between bars), then one line per row of cells."""
    lines = [header, "|---" * header.count(" |") + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = (
        "| N | layout | pairs | bare s | operator: written s | operator: Compliant s | ratio | "
        "CPU s per 1,000: operator | bare | CPU ratio | writes/Deployment | RSS MiB (peak) |"
    )
    return _grid(header, (_main_cells(row) for row in rows))


def _main_cells(row: Mapping[str, Any]) -> list[str]:
    timeouts = f" ({row['timeouts']} timed out)" if row["timeouts"] else ""
    return [
        f"{row['n']:,}",
        _layout(row),
        str(row["pairs"]),
        _spread(row["bare_s"], ".1f"),
        _spread(row["written_s"], ".1f"),
        _spread(row["operator_s"], ".1f") + timeouts,
        _spread(row["ratio"]) + "x" if row["ratio"] else "n/a",
        _spread(row["cpu_operator"]),
        _spread(row["cpu_bare"]),
        _spread(row["cpu_ratio"]) + "x" if row["cpu_ratio"] else "n/a",
        _spread(row["writes_per_deployment"]),
        f"{_spread(row['rss_mib'], '.0f')} ({_spread(row['hwm_mib'], '.0f')})",
    ]


def requests_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The operator's own requests per Deployment (median), beside a bare run's."""
    header = "| N | layout | " + " | ".join(OURS) + " | all requests: operator run | bare run |"
    return _grid(header, (_request_cells(row) for row in rows))


def _request_cells(row: Mapping[str, Any]) -> list[str]:
    ours, bare = row["requests_operator"], row["requests_bare"]
    return [
        f"{row['n']:,}",
        _layout(row),
        *(f"{ours.get(k, 0.0):.2f}" for k in OURS),
        f"{sum(ours.values()):.2f}",
        f"{sum(bare.values()):.2f}",
    ]


def after_table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = (
        "| N | layout | after: writes, CPU % of a core (30 s) | then quiet: writes, CPU % | "
        "drift p50/p99 ms | restart: Ready s, writes, requests, CPU % after |"
    )
    return _grid(header, (_after_cells(row) for row in rows))


def _after_cells(row: Mapping[str, Any]) -> list[str]:
    idle, quiet, drift, restart = row["idle"], row["quiet"], row["drift"], row["restart"]
    return [
        f"{row['n']:,}",
        _layout(row),
        "n/a" if idle is None else f"{idle['writes']}, {idle['cpu_share'] * 100:.1f}",
        "n/a" if quiet is None else f"{quiet['writes']}, {quiet['cpu_share'] * 100:.1f}",
        "n/a" if not drift or "p50_ms" not in drift else f"{drift['p50_ms']:.0f} / {drift['p99_ms']:.0f}",
        "n/a"
        if restart is None
        else f"{restart['ready_s']:.1f}, {restart['writes']}, "
        f"{sum(restart['requests'].values())}, {restart['idle_cpu_share'] * 100:.1f}",
    ]


def targets(rows: Sequence[Mapping[str, Any]]) -> str:
    """The fleet-scale targets, each met or missed in these runs (medians of the pairs)."""
    lines = ["| target | measured | met |", "|---|---|---|"]

    def add(what: str, text: str, ok: bool) -> None:
        lines.append(f"| {what} | {text} | {'yes' if ok else 'no'} |")

    for row in rows:
        if row["ratio"] and row["n"] in (1000, 10000):
            ratio = statistics.median(row["ratio"])
            add(
                f"converge <= 1.2x the bare loop (N={row['n']:,}, {_layout(row)})",
                f"{ratio:.2f}x",
                ratio <= 1.2,
            )
    cpu = [(row, statistics.median(row["cpu_ratio"])) for row in rows if row["cpu_ratio"]]
    if cpu:
        row, worst = max(cpu, key=lambda c: c[1])
        add(
            "operator CPU per 1,000 <= 2x the bare client's",
            f"{worst:.2f}x (worst: N={row['n']:,}, {_layout(row)})",
            worst <= 2,
        )
    idle = [(row, row["idle"]["cpu_share"], row["quiet"]["cpu_share"]) for row in rows if row["idle"]]
    if idle:
        after, quiet = max(i[1] for i in idle), max(i[2] for i in idle)
        add(
            "CPU in the 30 s after convergence <= 5 % of a core",
            f"{after * 100:.1f} % (worst N)",
            after <= 0.05,
        )
        add("CPU when quiet <= 1 % of a core", f"{quiet * 100:.1f} % (worst N)", quiet <= 0.01)
    for n, limit in ((1000, 120), (10000, 200)):
        rss = [statistics.median(row["rss_mib"]) for row in rows if row["n"] == n and row["rss_mib"]]
        if rss:
            add(f"RSS <= {limit} MiB at {n:,}", f"{max(rss):.0f} MiB", max(rss) <= limit)
    for row in rows:
        restart = row["restart"]
        if restart is not None:
            add(
                f"restart with {row['n']:,} compliant ({_layout(row)}): 0 writes, Ready <= 30 s",
                f"{restart['writes']} writes, Ready in {restart['ready_s']:.1f} s",
                restart["writes"] == 0 and restart["ready_s"] <= 30,
            )
    writes = [w for row in rows for w in row["writes_per_deployment"]]
    if writes:
        add(
            "1 write per Deployment needing one",
            f"{min(writes):.2f}-{max(writes):.2f}",
            all(w == 1.0 for w in writes),
        )
    return "\n".join(lines)


def report(records: Sequence[Record]) -> str:
    rows = summary(records)
    first = records[0]
    machine = first.get("machine", {})
    commits = sorted({r.get("commit", "?") for r in records})
    head = (
        f"# Fleet benchmark\n\n{first.get('date')} to {records[-1].get('date')}, commit {', '.join(commits)}, "
        f"{machine.get('nproc')} cores, Python {machine.get('python')}, "
        f"Kubernetes {machine.get('kubernetes')} (local testbed, kwok nodes)\n\n"
        "- Interleaved: per N, bare then operator, `pairs` times, each run in fresh namespaces. A cell "
        "is the median over the runs, with the range in brackets; ratio is the median of the pairs' "
        "ratios (operator's Compliant time over bare's time in the same pair).\n"
        "- bare s: from the start of its pass to its last write's answer. Operator: from the profile's "
        "creation (from start: from the process's start) until every Deployment carries its apply "
        "(written), and until every profile's status says Compliant; both read from one watch.\n"
        "- CPU s per 1,000: the process's CPU (/proc) over that time, per 1,000 Deployments.\n"
        "- After: the 30 s after convergence, then 30 s more (quiet), writes to Deployments and the "
        "operator's CPU as a share of one core (first pair only). Restart: the operator stopped with "
        "everything compliant and started again: time to /readyz 200, then writes, all requests and "
        "CPU over 30 s.\n"
    )
    return (
        "\n\n".join(
            [
                head,
                table(rows),
                "Requests per Deployment the apiserver counted (median over the operator's runs; all clients):",
                requests_table(rows),
                after_table(rows),
                targets(rows),
            ]
        )
        + "\n"
    )


def one_line(record: Record) -> str:
    return (
        f"fleet: {record['contender']} N={record['n']} pair {record.get('pair')}: "
        f"time {_time(record)} s, cpu {record.get('cpu_s')} s, "
        f"writes/Deployment {record.get('writes_per_deployment')}, rss {record.get('rss_mib')} MiB"
        + (f", error {record['error']}" if record.get("error") else "")
    )


def plot(records: Sequence[Record], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rows = [r for r in summary(records) if r["namespaces"] == 1 and not r["from_start"]]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for key, label, color in (
        ("bare_s", "bare loop", "tab:blue"),
        ("operator_s", "operator (Compliant)", "tab:orange"),
    ):
        points = [(r["n"], r[key]) for r in rows if r[key]]
        if not points:
            continue
        xs = [n for n, _ in points]
        mids = [statistics.median(v) for _, v in points]
        low = [m - min(v) for m, (_, v) in zip(mids, points, strict=True)]
        high = [max(v) - m for m, (_, v) in zip(mids, points, strict=True)]
        axes.errorbar(xs, mids, yerr=[low, high], marker="o", capsize=4, color=color, label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axes.set_xticks(sorted({r["n"] for r in rows}))
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("Deployments (N), one namespace")
    axes.set_ylabel("time to converge (s): median, range")
    axes.set_title("Fleet convergence after a profile is applied (interleaved runs)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(records: Sequence[Record]) -> None:
    if not records:
        print("fleet: no records")
        return
    text = report(records)
    print(text)
    (RESULTS / "fleet.md").write_text(text)
    plot(records, RESULTS / "fleet.png")
    print(f"results: {RESULTS.relative_to(ROOT)}/fleet.md, fleet.png and one fleet-*.json per run")

"""What the fleet benchmark reads besides the objects: the apiserver's own request counters and
a contender process's CPU time and memory from /proc."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SERIES = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
# Spec writes: a server-side apply is counted as APPLY, a patch as PATCH, a replace as PUT
# (UPDATE in some versions' docs; both are taken).
WRITE_VERBS = frozenset({"PATCH", "APPLY", "PUT", "UPDATE"})


def deployment_writes(metrics_text: str) -> int:
    """Sum of apiserver_request_total over writes to Deployments' main resource, dry runs apart.

    The counter is cluster-wide; the controller-manager's writes go to the status subresource
    (subresource="status") and so are left out.
    """
    return writes(requests(metrics_text))


def scrape_apiserver(api_client: Any) -> str:
    """GET /metrics with the client's credentials (the testbed's admin may read it)."""
    request = api_client.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    response = api_client.call_api(*request, _request_timeout=60)
    return bytes(response.read()).decode()


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and of its children it has waited for."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parentheses: the fields start after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / _CLOCK_TICKS


@dataclass(frozen=True)
class Memory:
    rss_kib: int
    hwm_kib: int  # the peak resident set over the process's life


def memory(pid: int) -> Memory:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return Memory(rss_kib=values.get("VmRSS", 0), hwm_kib=values.get("VmHWM", 0))


RequestKey = tuple[str, str]  # ("deployments" or "serviceprofiles/status", verb)


def requests(metrics_text: str) -> dict[RequestKey, float]:
    """apiserver_request_total summed by resource (with its subresource) and verb, dry runs
    apart: every client's requests, so a contender's are read as the difference from a bare
    run's over the same objects."""
    totals: dict[RequestKey, float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        match = _SERIES.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("dry_run", ""):
            continue
        resource = labels.get("resource", "") or "(none)"
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        key = (resource, labels.get("verb", ""))
        totals[key] = totals.get(key, 0.0) + float(match["value"])
    return totals


def requests_between(before: dict[RequestKey, float], after: dict[RequestKey, float]) -> dict[str, int]:
    """The requests made in between, as {"resource verb": count}, largest first."""
    delta = {f"{r} {v}": round(after[(r, v)] - before.get((r, v), 0.0)) for r, v in after}
    return dict(sorted(((k, n) for k, n in delta.items() if n > 0), key=lambda kv: -kv[1]))


def writes(totals: dict[RequestKey, float]) -> int:
    """Writes to Deployments' main resource in ``requests()`` totals (as deployment_writes)."""
    return round(sum(n for (r, v), n in totals.items() if r == "deployments" and v in WRITE_VERBS))

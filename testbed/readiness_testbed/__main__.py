"""``python -m readiness_testbed build|up|down|status|urls|rss|leftovers [--dir DIR]``, and faults:
``python -m readiness_testbed stop|kill|start|pause|resume COMPONENT`` (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok): the data and the addresses are kept.
``up`` also starts the real node ``real-0`` where the machine can run it (``--no-real-node``:
kwok nodes only), Prometheus and the OpenTelemetry Collector; ``urls`` prints where those two and
the node's containerd are (one JSON object); ``leftovers`` lists what the real node left on the
machine (exit 1 if any)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .binaries import ensure_binaries, ensure_node_binaries, ensure_observer_binaries
from .cluster import Testbed, TestbedError
from .operator_image import ensure_operator_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m readiness_testbed", description=__doc__)
    parser.add_argument(
        "action",
        choices=(
            "build",
            "up",
            "down",
            "status",
            "rss",
            "leftovers",
            "urls",
            "stop",
            "kill",
            "start",
            "pause",
            "resume",
        ),
    )
    parser.add_argument("component", nargs="?", help="for stop, kill, start, pause and resume")
    parser.add_argument("--dir", type=Path, default=Path(".testbed"), help="state directory")
    parser.add_argument("--nodes", type=int, default=3, help="fake kwok nodes to create")
    parser.add_argument("--no-real-node", action="store_true", help="up: kwok nodes only, no real-0")
    args = parser.parse_args(argv)
    testbed = Testbed(args.dir, nodes=args.nodes, real_node=not args.no_real_node)
    try:
        if args.action == "build":
            for name, path in ensure_binaries().items():
                print(f"{name}\t{path}")
            for name, path in ensure_node_binaries().items():
                print(f"{name}\t{path}")
            for name, path in ensure_observer_binaries().items():
                print(f"{name}\t{path}")
            print(f"operator-image\t{ensure_operator_image()}")
        elif args.action == "up":
            if not testbed.up():
                print(f"testbed: already running; KUBECONFIG={testbed.kubeconfig}", file=sys.stderr)
        elif args.action == "down":
            testbed.down()
            print("testbed: stopped", file=sys.stderr)
        elif args.action == "status":
            healthy = testbed.is_healthy()
            print("running" if healthy else "stopped")
            if healthy:
                print(f"real-0: {testbed.real_node_unavailable or 'running'}", file=sys.stderr)
            return 0 if healthy else 1
        elif args.action == "urls":
            if not testbed.is_healthy():
                print("testbed: not running", file=sys.stderr)
                return 1
            print(json.dumps(testbed.urls()))
        elif args.action == "leftovers":
            found = testbed.real_node_leftovers()
            for line in found:
                print(line)
            return 1 if found else 0
        elif args.action in ("stop", "kill", "start", "pause", "resume"):
            if not args.component:
                parser.error(f"{args.action} needs a component")
            if args.action in ("stop", "kill"):
                testbed.stop(args.component, kill=args.action == "kill")
            else:
                getattr(testbed, args.action)(args.component)
            print(f"testbed: {args.action} {args.component}", file=sys.stderr)
        elif args.action == "rss":
            for name, size in testbed.peak_rss_bytes().items():
                print(f"{name}\t{size / 2**20:.0f} MiB")
    except TestbedError as error:
        print(f"testbed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

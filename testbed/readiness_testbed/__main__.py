"""``python -m readiness_testbed build|up|down|status [--dir DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .binaries import ensure_binaries
from .cluster import Testbed, TestbedError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m readiness_testbed", description=__doc__)
    parser.add_argument("action", choices=("build", "up", "down", "status", "rss"))
    parser.add_argument("--dir", type=Path, default=Path(".testbed"), help="state directory")
    parser.add_argument("--nodes", type=int, default=3, help="fake kwok nodes to create")
    args = parser.parse_args(argv)
    testbed = Testbed(args.dir, nodes=args.nodes)
    try:
        if args.action == "build":
            for name, path in ensure_binaries().items():
                print(f"{name}\t{path}")
        elif args.action == "up":
            if not testbed.up():
                print(f"testbed: already running; KUBECONFIG={testbed.kubeconfig}", file=sys.stderr)
        elif args.action == "down":
            testbed.down()
            print("testbed: stopped", file=sys.stderr)
        elif args.action == "status":
            healthy = testbed.is_healthy()
            print("running" if healthy else "stopped")
            return 0 if healthy else 1
        elif args.action == "rss":
            for name, size in testbed.peak_rss_bytes().items():
                print(f"{name}\t{size / 2**20:.0f} MiB")
    except TestbedError as error:
        print(f"testbed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

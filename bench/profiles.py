"""py-spy on a contender, and the top frames of what it recorded.

``record(pid, path)`` samples the process (without pausing it) until ``stop()``; the collapsed
stacks go to ``path``. ``python -m bench.profiles PATH [--top 25]`` prints, per function, the
share of samples spent in it (self) and under it (total): the frames the closing notes quote.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


class Recording:
    def __init__(self, pid: int, path: Path, rate: int = 100) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # --gil: only the thread holding the interpreter, so a thread waiting on a socket is not counted.
        argv = [spy, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--gil"]
        self._process = subprocess.Popen(
            [*argv, "--format", "raw", "--output", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> Path:
        """py-spy writes its file when interrupted."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
        return self.path


def _function(frame: str) -> str:
    """'handle (kopf/_core/reactor/processing.py:123)' -> 'handle (kopf/_core/reactor/processing.py)'."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    for marker in ("site-packages/", "lib/python3.11/", "operator/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{name} ({file})"


def top(path: Path, count: int = 25) -> str:
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        frames = [_function(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            under[frame] += n
    lines = [f"{path.name}: {total} samples", "", "self %  function"]
    lines += [f"{100 * n / total:5.1f}  {f}" for f, n in own.most_common(count)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / total:6.1f}  {f}" for f, n in under.most_common(count)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profiles", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    print(top(args.path, args.top))


if __name__ == "__main__":
    main()

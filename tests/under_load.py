"""Runs a command while busy loops keep every core of the machine busy.

    python tests/under_load.py [--burners N] [--runs K] -- COMMAND...

The suite must hold on a loaded machine (a shared CI runner, a laptop building something
else); this is how that is shown: ``make test-load`` runs the whole suite three times in a
row under it. The burners are plain Python busy loops, one per core by default, started
before the first run and stopped after the last (also on Ctrl-C or a failure). Each run
prints its wall time, exit code and the load average; the first failing run ends it with
that run's exit code.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def start_burners(count: int) -> list[subprocess.Popen[bytes]]:
    """Starts ``count`` busy-loop processes at the same priority as this one."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop(burners: list[subprocess.Popen[bytes]]) -> None:
    for proc in burners:
        proc.kill()
    for proc in burners:
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 1, help="busy loops")
    parser.add_argument("--runs", type=int, default=1, help="times to run the command in a row")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    burners = start_burners(args.burners)
    pids = " ".join(str(p.pid) for p in burners)
    print(f"under load: {args.burners} busy loops (pids {pids})", file=sys.stderr, flush=True)
    try:
        for run in range(1, args.runs + 1):
            start = time.monotonic()
            code = subprocess.call(command)
            took = time.monotonic() - start
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"run {run}/{args.runs}: exit {code} in {took / 60:.1f} min (load average {load})",
                file=sys.stderr,
                flush=True,
            )
            if code != 0:
                return code
        return 0
    finally:
        stop(burners)


if __name__ == "__main__":
    sys.exit(main())

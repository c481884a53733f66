"""Wall time of `import tp_gym` and of `tp-gym --help` in fresh interpreters (medians).

Run: python benchmarks/import_time.py [--runs 15]

Each run starts a new `python -c "import tp_gym"` process and subtracts the time of a bare
`python -c "pass"`, so interpreter start-up is not counted. The goal is under 0.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=False, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    bare = statistics.median(timed("pass") for _ in range(args.runs))
    full = statistics.median(timed("import tp_gym") for _ in range(args.runs))
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, tp_gym; print(sorted(m for m in ('litellm', 'matplotlib', 'pandas', 'scipy') if m in sys.modules))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"interpreter start-up      {bare:.3f} s")
    print(f"import tp_gym (net)       {full - bare:.3f} s   goal < 0.5 s")
    print(f"heavy modules imported    {heavy}")
    cli = statistics.median(
        timed("import sys; from tp_gym.cli import main; sys.argv = ['tp-gym', '--help']; main()")
        for _ in range(args.runs)
    )
    print(f"tp-gym --help             {cli:.3f} s   goal < 1 s (interpreter start-up included)")


if __name__ == "__main__":
    main()

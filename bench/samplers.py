"""Samplers at scale: examples/samplers.yaml (12 sampler columns: a person per row with
conditional locales, conditional budget ranges, scipy, and two constraints) at growing row
counts, each in a fresh process so its peak RSS is its own.

    python bench/samplers.py                    # 100,000 and 1,000,000 rows
    python bench/samplers.py --rows 10000 50000

Needs the person and scipy extras (``pip install -e '.[bench,person,scipy]'``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _harness
from _harness import measure, run_sizes, write_report

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "samplers.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        gl = _harness.load_gridloom()

        def run(out: str) -> gl.RunResult:
            return gl.create(CONFIG, num_records=args.child, output_dir=out)

        figures = measure(run, args.child)
        print(json.dumps(figures))
        return
    runs = run_sizes(__file__, args.rows)
    title = "12 samplers: person, conditional_params, two constraints (examples/samplers.yaml)"
    print(write_report("samplers", title, runs))


if __name__ == "__main__":
    main()

"""Scale smoke benchmark: samplers + expressions (examples/people.yaml) at growing row counts.

Each size runs in a fresh process so its peak RSS is its own; flat memory means a peak-RSS
ratio near 1 between the largest and smallest size.

    python bench/scale.py                 # 10,000 and 100,000 rows
    python bench/scale.py --rows 1000 5000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _harness
from _harness import measure, run_sizes, write_report

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "people.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        gl = _harness.load_gridloom()

        run = lambda out: gl.create(CONFIG, num_records=args.child, output_dir=out)  # noqa: E731
        print(json.dumps(measure(run, args.child)))
        return
    runs = run_sizes(__file__, args.rows)
    print(write_report("scale", "samplers + expressions (examples/people.yaml)", runs))


if __name__ == "__main__":
    main()

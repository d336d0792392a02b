"""Throughput of one ``person`` column: rows and cells (struct fields) per second.

python bench/person.py                 # 100,000 rows, en_US
python bench/person.py --rows 20000 --locale ja_JP
"""

from __future__ import annotations

import argparse
import time

import _harness


def main() -> None:
    gl = _harness.load_gridloom()
    from gridloom.kinds.person import FIELDS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--locale", default="en_US")
    parser.add_argument("--row-group-size", type=int, default=5_000)
    args = parser.parse_args()
    config = (
        gl.PipelineBuilder(seed=1)
        .person("customer", args.locale)
        .run(row_group_size=args.row_group_size, max_row_groups_in_flight=2)
        .build()
    )
    started = time.perf_counter()
    result = gl.preview(config, num_records=args.rows)
    elapsed = time.perf_counter() - started
    rows = result.num_rows
    print(
        f"person ({args.locale}): {rows:,} rows in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s,"
        f" {rows * len(FIELDS) / elapsed:,.0f} cells/s ({len(FIELDS)} fields a row)"
    )


if __name__ == "__main__":
    main()

"""Per-cell scheduling overhead: no-op async cell columns after one sampler.

Every cell is its own trio task through the submission limiter, the completion tracker and the
ready queue; with ``--model-bound`` each also takes the submission → LLM-wait handoff. The
figure is the engine's own cost per cell (there is no model).

    python bench/cells.py                       # 10,000 and 100,000 rows x 3 cell columns
    python bench/cells.py --model-bound --rows 10000
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import _harness
from _harness import measure, run_sizes, write_report


async def passthrough(row: dict[str, Any], ctx: Any) -> int:
    """A cell function that does nothing but hand its input on."""
    return int(next(iter(row.values())))


def pipeline(model_bound: bool) -> Any:
    gl = _harness.load_gridloom()

    model = "sim" if model_bound else None
    builder = gl.PipelineBuilder(seed=1).uniform("n", 0, 1000, convert_to="int")
    if model_bound:
        builder = builder.provider("local", endpoint="http://127.0.0.1:9/v1").model(
            "sim", provider="local", model="none"
        )
    previous = "n"
    for name in ("a", "b", "c"):
        builder = builder.custom(name, passthrough, depends_on=[previous], dtype="int", model=model)
        previous = name
    return builder.run(row_group_size=1000, max_row_groups_in_flight=4).build()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--model-bound", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        gl = _harness.load_gridloom()

        config = pipeline(args.model_bound)
        run = lambda out: gl.create(config, num_records=args.child, output_dir=out)  # noqa: E731
        print(json.dumps(measure(run, args.child)))
        return
    extra = ["--model-bound"] if args.model_bound else []
    runs = run_sizes(__file__, args.rows, *extra)
    kind = "model-bound (handoff)" if args.model_bound else "plain"
    name = "cells-model-bound" if args.model_bound else "cells"
    print(write_report(name, f"3 async no-op cell columns, {kind}", runs))


if __name__ == "__main__":
    main()

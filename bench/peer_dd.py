"""Benchmark peer: NVIDIA NeMo Data Designer (PyPI ``data-designer`` 0.9.7).

Standalone: run it with the Data Designer venv, never with gridloom's venv, e.g.

    /work/dd-venv/bin/python bench/peer_dd.py --shape narrow --records 10 \
        --url http://127.0.0.1:PORT/v1 [--url-b http://127.0.0.1:PORT2/v1] --parallel 16 \
        [--model-a sim-m] [--model-b sim-judge-b]

It builds one of four pipeline shapes (a category sampler ``topic`` plus LLM text
columns whose prompts reference other columns; the same column names, prompts and topic
values as ``bench/shapes.py``), points Data Designer at an OpenAI-compatible endpoint
(gridloom's ``simulate``) and prints one JSON line: shape, records, setup_s, wall_s, gen_s,
cpu_s, call_cpu_s, rows, llm_cells, error. ``--model-a``/``--model-b`` are the model names
sent to the endpoint (``bench/peer.py`` passes ``shapes.SIM_MODEL``'s, so one simulator's
timeline tells the two models apart; ``peer.py`` computes the bound from it).

Before the timed call the modules Data Designer 0.9.7 imports lazily inside ``create()``
(networkx, pyarrow.parquet/dataset, tiktoken, anyio's asyncio backend, ...) are imported and
a tiny Parquet table is written, as ``shapes.py --child`` warms gridloom: the timings are
the engine's, not first-import costs (``--cold`` skips this).

Data Designer 0.9.7 has only the async task-queue builder (``DatasetBuilder.build``
always calls ``_build_async``); there is no sync/async switch left to set.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

SHAPES = ("narrow", "deep", "wide", "dual")
# Mirrors bench/shapes.py (its category values and shape_columns); bench/peer.py checks it.
TOPICS = ["rivers", "volcanoes", "deserts"]
# Imported lazily by Data Designer 0.9.7 inside create()/preview(); warmed before timing.
LAZY_MODULES = (
    "networkx",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "pyarrow.substrait",
    "pyarrow.pandas_compat",
    "pandas.core.methods.to_dict",
    "pandas.core.arrays.arrow.extension_types",
    "tiktoken",
    "tiktoken_ext.openai_public",
    "anyio._backends._asyncio",
    "anyio.streams.tls",
    "xml.etree.ElementTree",
    "netrc",
    "data_designer.engine.models.facade",
    "data_designer.engine.models.clients.adapters.httpx_sharding",
)


def _set_env() -> None:
    """Environment Data Designer reads at import time; call before importing it."""
    # telemetry.py reads it at import time (default: post usage telemetry to NVIDIA).
    os.environ.setdefault("NEMO_TELEMETRY_ENABLED", "false")
    # One probe request per model before generation; skip it so wall_s is generation only.
    os.environ.setdefault("DATA_DESIGNER_SKIP_MODEL_HEALTH_CHECKS", "1")
    os.environ.setdefault("DISABLE_DATA_DESIGNER_PLUGINS", "true")


def _columns(shape: str) -> list[tuple[str, str, str]]:
    """(name, prompt, model alias) for each LLM text column of a shape."""
    if shape == "narrow":
        names = ["topic", "a", "b", "c", "d"]
        return [
            (cur, f"Continue from: {{{{ {prev} }}}}", "model-a")
            for prev, cur in itertools.pairwise(names)
        ]
    if shape == "deep":
        return [
            ("summary", "Summarize {{ topic }}.", "model-a"),
            ("trivia", "Trivia about {{ topic }}.", "model-a"),
            ("analysis", "Analyse: {{ summary }}", "model-a"),
            ("conclusion", "Conclude: {{ analysis }}", "model-a"),
        ]
    if shape == "wide":
        return [(f"c{i}", f"Angle {i} on {{{{ topic }}}}.", "model-a") for i in range(5)]
    if shape == "dual":
        gens = [(f"gen{i}", f"Write {i} about {{{{ topic }}}}.", "model-a") for i in range(3)]
        judges = [(f"judge{i}", f"Judge this: {{{{ gen{i} }}}}", "model-b") for i in range(3)]
        return gens + judges
    raise ValueError(f"unknown shape {shape!r}")


def _warm() -> list[str]:
    """Import what create() would import lazily; write a tiny Parquet table. Missing modules."""
    import importlib
    import io

    missing = []
    for name in LAZY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), io.BytesIO())
    return missing


def _time_builder(cls: type, out: dict[str, Any]) -> None:
    """Time DatasetBuilder.build/build_preview: the async engine run alone (gen_s).

    wall_s covers the whole create()/preview() call, which also writes parquet and
    profiles the dataset; gen_s is the scheduler run inside it.
    """
    for name in ("build", "build_preview"):
        original = getattr(cls, name)

        def timed(self: Any, *a: Any, _orig: Callable[..., Any] = original, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return _orig(self, *a, **kw)
            finally:
                out["gen_s"] = round(time.perf_counter() - t, 4)

        setattr(cls, name, timed)


def _run(args: argparse.Namespace, out: dict[str, Any]) -> None:
    import data_designer.config as dd
    from data_designer.engine.dataset_builders.dataset_builder import DatasetBuilder
    from data_designer.interface import DataDesigner

    _time_builder(DatasetBuilder, out)
    if not args.cold:
        out["warm_missing"] = _warm()

    t0 = time.perf_counter()
    providers = [dd.ModelProvider(name="sim-a", endpoint=args.url, api_key="dummy")]
    if args.shape == "dual":
        providers.append(dd.ModelProvider(name="sim-b", endpoint=args.url_b, api_key="dummy"))

    def model(alias: str, provider: str, name: str) -> dd.ModelConfig:
        return dd.ModelConfig(
            alias=alias,
            model=name,
            provider=provider,
            skip_health_check=True,
            inference_parameters=dd.ChatCompletionInferenceParams(
                max_parallel_requests=args.parallel, max_tokens=64
            ),
        )

    models = [model("model-a", "sim-a", args.model_a)]
    if args.shape == "dual":
        models.append(model("model-b", "sim-b", args.model_b))

    builder = dd.DataDesignerConfigBuilder(model_configs=models)
    builder.add_column(
        dd.SamplerColumnConfig(
            name="topic",
            sampler_type=dd.SamplerType.CATEGORY,
            params=dd.CategorySamplerParams(values=TOPICS),
        )
    )
    for name, prompt, alias in _columns(args.shape):
        builder.add_column(dd.LLMTextColumnConfig(name=name, prompt=prompt, model_alias=alias))

    designer = DataDesigner(
        artifact_path=args.artifacts, model_providers=providers, auto_configure_logging=False
    )
    designer.set_run_config(
        dd.RunConfig(
            otel_metrics_port=None,  # default 9464 would clash between concurrent runs
            display_tui=False,
            progress_interval=3600.0,
            disable_early_shutdown=True,
        )
    )
    out["setup_s"] = round(time.perf_counter() - t0, 4)

    t1, c1 = time.perf_counter(), time.process_time()
    if args.api == "preview":
        frame = designer.preview(builder, num_records=args.records).dataset
    else:
        frame = designer.create(builder, num_records=args.records, dataset_name=args.shape)
        frame = frame.load_dataset()
    out["wall_s"] = round(time.perf_counter() - t1, 4)
    out["call_cpu_s"] = round(time.process_time() - c1, 4)
    out["rows"] = 0 if frame is None else len(frame)
    llm = [name for name, _, _ in _columns(args.shape)]
    if frame is not None:
        out["llm_cells"] = int(sum(frame[c].notna().sum() for c in llm if c in frame.columns))
    if out["rows"] != args.records:
        out["error"] = f"produced {out['rows']} rows, expected {args.records}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=SHAPES, required=True)
    parser.add_argument("--records", type=int, default=10)
    parser.add_argument("--url", required=True, help="base URL ending in /v1 (model A)")
    parser.add_argument("--url-b", default=None, help="base URL for model B (shape dual)")
    parser.add_argument("--parallel", type=int, default=16, help="max parallel requests/model")
    parser.add_argument("--model-a", default="sim-model-a", help="model name sent for model A")
    parser.add_argument("--model-b", default="sim-model-b", help="model name sent for model B")
    parser.add_argument(
        "--api",
        choices=("create", "preview"),
        default="create",
        help="create() writes parquet artifacts and profiles; preview() stays in memory",
    )
    parser.add_argument("--artifacts", default=None, help="artifact dir (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="let Data Designer log to stderr")
    parser.add_argument(
        "--cold", action="store_true", help="do not pre-import create()'s lazy imports"
    )
    args = parser.parse_args(argv)
    if args.shape == "dual" and not args.url_b:
        parser.error("--shape dual needs --url-b")
    for attr in ("url", "url_b"):
        value = getattr(args, attr)
        if value and not value.rstrip("/").endswith("/v1"):
            setattr(args, attr, value.rstrip("/") + "/v1")

    _set_env()
    import logging

    if args.verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    else:
        # The profiler inside create()/preview() warns per column that it cannot fetch
        # tiktoken's cl100k_base offline; keep stderr quiet unless asked.
        logging.getLogger("data_designer").setLevel(logging.ERROR)

    out: dict[str, Any] = {"shape": args.shape, "records": args.records, "peer": "data-designer"}
    for key in ("setup_s", "wall_s", "gen_s", "cpu_s", "call_cpu_s", "error"):
        out[key] = None
    out["rows"] = 0
    out["llm_cells"] = 0
    with tempfile.TemporaryDirectory(prefix="peer_dd_") as tmp:
        args.artifacts = args.artifacts or tmp
        try:
            _run(args, out)
        except Exception as exc:  # reported in the JSON line
            out["error"] = f"{type(exc).__name__}: {exc}"
            if args.verbose:
                traceback.print_exc()
    out["cpu_s"] = round(time.process_time(), 4)  # whole process, imports included
    print(json.dumps(out), flush=True)
    return 0 if out["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())

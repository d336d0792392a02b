"""Pipeline-level configuration: providers, models, seed dataset, run settings, the pipeline."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from .._attrs import frozen
from ..errors import ConfigError, ConfigIssue
from ._cache import (
    CacheSetting,
    PriceConfig,
    as_price,
    check_cache_setting,
)
from ._columns import TEMPLATE_RESERVED_NAMES, ColumnConfig
from ._constraints import Constraint
from ._headers import check_headers_env, check_key_header
from ._inference import (
    InferenceDistribution,
    as_param,
    check_max_tokens,
    check_temperature,
    check_top_p,
)
from ._issues import render_path
from ._processors import ProcessorConfig
from ._run import RunConfig
from ._seed_tables import seed_path
from ._simulation import SimulationConfig
from ._thinking import thinking_issues
from ._typecheck import type_issues
from ._urls import check_url, redact_url
from ._validators import finite, int64, text, to_tuple

__all__ = [
    "ModelConfig",
    "PipelineConfig",
    "ProviderConfig",
    "RunConfig",
    "SeedDatasetConfig",
    "SeedPartition",
]


_PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_HTTP_SCHEMES = ("http", "https")
_ENDPOINT_CREDENTIALS = (
    "they would not be sent, and the run's config.yaml would show them; name the"
    " environment variable holding the API key in api_key_env, or send other credentials"
    " in headers (their values are never shown)"
)


def _redacted_repr(value: str | None) -> str:
    return repr(None if value is None else redact_url(value))


def _as_given(value: Any) -> Any:
    # An attrs converter, so that cattrs hands the raw value over (it has no hook for these
    # unions) and the validator below names the field; lists become tuples.
    return tuple(value) if isinstance(value, list) else value


def _check_proxy(_inst: Any, _attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"proxy must be a URL string or null, got {type(value).__name__}")
    check_url(value, field="proxy", schemes=_PROXY_SCHEMES, example="http://proxy.example:3128")


def _check_verify(_inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or (isinstance(value, str) and value):
        return
    raise TypeError(
        "verify must be true, false or the path of a CA bundle (a PEM file or a"
        f" directory of certificates), got {value!r}"
    )


def _check_cert(_inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None or (isinstance(value, str) and value):
        return
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(part, str) and part for part in value)
    ):
        return
    raise TypeError(
        "cert must be the path of a client certificate (PEM holding the certificate and its"
        f" key) or a list [certificate, key] of two paths, got {value!r}"
    )


@frozen(kw_only=True)
class ProviderConfig:
    """Where models are served.

    Attributes:
        name: referenced by ``ModelConfig.provider``.
        type: ``openai`` (any OpenAI-compatible server, vLLM included), ``anthropic``, or
            ``simulated`` (gridloom's built-in endpoint; needs no key and no network).
        endpoint: base URL, e.g. ``http://127.0.0.1:8000/v1``; not used by ``simulated``.
            Each request goes to its path with the API's path appended (every segment kept,
            trailing slashes dropped: ``.../v1`` → ``.../v1/chat/completions``) and its
            query, if any, kept (``.../deployments/gpt4?api-version=2024-06-01`` →
            ``.../deployments/gpt4/chat/completions?api-version=2024-06-01``). An
            ``http://`` or ``https://`` URL with a host; no fragment, no spaces, and no
            credentials (``user:password@``, or a query parameter named like one, such as
            ``?key=``, ``api_key``, ``access_token`` or ``sig``, is refused: use
            ``api_key_env`` or ``headers``). The run's ``config.yaml`` shows it whole, query
            included.
        api_key_env: name of the environment variable holding the API key. Surrounding
            whitespace (a trailing newline from a file) is stripped; a key with a control
            character inside is a configuration error naming the variable. The key itself
            never appears in a config, an output file, a log or an error message.
        api_key_header: the HTTP header the key is sent in, its value the key as it is
            (``api-key`` for Azure OpenAI key auth, ``x-api-key`` for some gateways). By
            default (``null``) an ``openai`` provider sends ``Authorization: Bearer <key>``
            and an ``anthropic`` one ``x-api-key: <key>``. Needs ``api_key_env``; a header
            name (letters, digits, ``-`` ...) that is not also in ``headers``. Like the key
            variable, not part of the config's hash.
        headers: extra HTTP headers sent with every request.
        headers_env: extra HTTP headers whose values are read from environment variables
            (header name to variable name), for credentials a gateway wants besides (or
            instead of) the key: ``{Ocp-Apim-Subscription-Key: APIM_KEY}``. The values are
            treated as the key is: never shown, saved or keyed on by the cache; an unset
            variable is a configuration error naming it. Not part of the config's hash.
        extra_body: extra fields merged into every request body.
        simulation: behaviour of the simulated endpoint (``simulated`` providers only).
        proxy: URL of the proxy requests go through (``http://``, ``https://``, ``socks5://``,
            ``socks5h://``, with a host; it may hold credentials,
            ``http://user:password@host:3128``, which are never shown). ``null``: from the
            environment when ``trust_env`` is true, by httpx's rules (``HTTPS_PROXY``,
            ``HTTP_PROXY``, ``ALL_PROXY``, and ``NO_PROXY`` to exclude hosts), else none.
            Requests through a proxy use httpx's transport.
        trust_env: read settings from the environment as httpx does: proxies (above) and,
            when ``verify`` is true, the CA bundle in ``SSL_CERT_FILE`` or ``SSL_CERT_DIR``.
            Environment proxies never apply to ``simulated`` providers (served on loopback).
        verify: check the server's TLS certificate: ``true`` against the trusted CAs
            (certifi's, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), a path to check it against
            that CA bundle (a PEM file, or a directory of certificates) instead, or
            ``false`` not to check it at all.
        cert: a client certificate for servers that ask for one: the path of a PEM file
            holding the certificate and its private key, or a list ``[certificate, key]``
            of two paths. (Relative paths here and in ``verify`` are taken from the working
            directory, as httpx takes them.)
        http2: speak HTTP/2 when the server offers it (needs the ``h2`` package); such a
            provider uses httpx's transport.
    """

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    type: Literal["openai", "anthropic", "simulated"] = "openai"
    endpoint: str | None = attrs.field(default=None)
    api_key_env: str | None = None
    api_key_header: str | None = attrs.field(default=None, validator=check_key_header)
    headers: dict[str, str] = attrs.field(factory=dict)
    headers_env: dict[str, str] = attrs.field(factory=dict, validator=check_headers_env)
    extra_body: dict[str, Any] = attrs.field(factory=dict)
    simulation: SimulationConfig | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(SimulationConfig)),
    )
    proxy: str | None = attrs.field(default=None, validator=_check_proxy, repr=_redacted_repr)
    trust_env: bool = True
    verify: bool | str = attrs.field(default=True, converter=_as_given, validator=_check_verify)
    cert: str | tuple[str, str] | None = attrs.field(
        default=None, converter=_as_given, validator=_check_cert
    )
    http2: bool = False

    @simulation.validator
    def _check_simulation(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and self.type != "simulated":
            raise ValueError("only a provider of type 'simulated' takes simulation settings")

    @endpoint.validator
    def _check_endpoint(self, _attribute: attrs.Attribute[Any], value: str | None) -> None:
        # A validator rather than __attrs_post_init__, so errors point at the field.
        if self.type != "simulated" and not value:
            raise ValueError(f"provider {self.name!r} of type {self.type!r} needs an endpoint")
        if value:
            check_url(
                value,
                field="endpoint",
                schemes=_HTTP_SCHEMES,
                example="http://127.0.0.1:8000/v1",
                credentials=_ENDPOINT_CREDENTIALS,
            )


@frozen(kw_only=True)
class ModelConfig:
    """A model as columns see it: an alias bound to a provider, a model name and defaults.

    Attributes:
        alias: the name columns use in their ``model`` field.
        provider: name of a ``ProviderConfig``.
        model: the model name sent to the provider.
        max_parallel_requests: upper bound on concurrent requests to this model; the adaptive
            throttle discovers the real capacity beneath it.
        temperature, top_p, max_tokens: default inference parameters (``temperature >= 0``,
            ``top_p`` between 0 and 1, ``max_tokens`` a whole number ``>= 1``) of the
            columns that set none. Each is a number, or a distribution every cell draws its
            own value from: ``{uniform: [0.5, 1.0]}`` or ``{values: [0.2, 0.9], weights:
            [1, 3]}`` (see docs/inference.md). Without ``max_tokens`` (here or on the
            column) none is sent and the server's own limit applies, except on an
            ``anthropic`` provider, whose API requires one: 1024 is sent.
        max_tokens_param: the request body field that carries ``max_tokens`` on an
            OpenAI-compatible provider: ``max_tokens`` (default; what vLLM, llama.cpp and most
            servers read) or ``max_completion_tokens``, which OpenAI's reasoning models
            (o-series, gpt-5) require: they refuse ``max_tokens`` with HTTP 400. Anthropic's
            API has only ``max_tokens``, which it always gets.
        timeout: seconds allowed for one request (a finite number > 0).
        json_schema_mode: the provider enforces a JSON schema given as ``response_format``;
            when false, structured columns put the schema in the prompt instead.
        requests_per_minute: a published request budget, spent evenly (one second's worth may
            go at once); aliases of one (provider, model) share the smallest.
        tokens_per_minute: a published token budget (input plus output); each response's usage
            is charged, and new requests wait while the budget is overdrawn. A reply that
            reports no usage (or 0 for a side) is charged an estimate, its characters / 4,
            and a warning says once per model that the budget runs on estimates.
        max_response_bytes: the longest reply accepted, in bytes (after decompression); a
            longer one is refused while it is read (``ResponseTooLarge``; the row is dropped)
            instead of being held in memory. Aliases of one (provider, model) share the
            largest.
        batch: send this model's requests through the provider's batch API (OpenAI
            ``/v1/batches``, Anthropic Message Batches; see docs/batch.md): cheaper, slower,
            resumable. Ready cells are collected into batch jobs.
        batch_max_size: a batch job is submitted once this many requests are queued.
        batch_wait: ... or once this many seconds have passed since the first queued one.
        cache: use the response cache (docs/cache.md): ``true`` (look answers up, store new
            ones), ``read_only`` (look up only), ``false``, or ``null`` (default): on for
            deterministic requests only — temperature 0, or a whole-number ``seed`` in the
            request body (column's or provider's ``extra_body``) — off otherwise. A column's
            own ``cache`` wins. Not part of the config's hash.
        price: ``{input: 2.5, output: 10, batch_discount: 0.5}``: dollars (or any currency)
            per million input and output tokens, and the share taken off batch tokens; the
            summary and ``metadata.json`` then show an estimated cost. Not part of the
            config's hash.
    """

    alias: str = attrs.field(validator=attrs.validators.min_len(1))
    provider: str
    model: str
    max_parallel_requests: int = attrs.field(default=4, validator=[int64, attrs.validators.ge(1)])
    temperature: float | InferenceDistribution | None = attrs.field(
        default=None, converter=as_param, validator=check_temperature
    )
    top_p: float | InferenceDistribution | None = attrs.field(
        default=None, converter=as_param, validator=check_top_p
    )
    max_tokens: int | InferenceDistribution | None = attrs.field(
        default=None, converter=as_param, validator=check_max_tokens
    )
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = attrs.field(
        default="max_tokens",
        validator=attrs.validators.in_(("max_tokens", "max_completion_tokens")),
    )
    timeout: float = attrs.field(default=120.0, validator=[finite, attrs.validators.gt(0)])
    json_schema_mode: bool = True
    requests_per_minute: float | None = attrs.field(
        default=None, validator=attrs.validators.optional([finite, attrs.validators.gt(0)])
    )
    tokens_per_minute: float | None = attrs.field(
        default=None, validator=attrs.validators.optional([finite, attrs.validators.gt(0)])
    )
    max_response_bytes: int = attrs.field(default=8 * 1024 * 1024, validator=attrs.validators.ge(1))
    batch: bool = False
    batch_max_size: int = attrs.field(
        default=1000, validator=[int64, attrs.validators.ge(1), attrs.validators.le(50_000)]
    )
    batch_wait: float = attrs.field(default=5.0, validator=[finite, attrs.validators.ge(0)])
    cache: CacheSetting = attrs.field(default=None, validator=check_cache_setting)
    price: PriceConfig | None = attrs.field(default=None, converter=as_price)


def _check_index_range(_inst: Any, _attribute: Any, value: tuple[int, ...] | None) -> None:
    if value is None:
        return
    if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise ValueError(f"index_range is [start, stop], two integers; got {list(value)!r}")
    start, stop = value
    if not 0 <= start < stop:
        raise ValueError(f"index_range [start, stop] needs 0 <= start < stop, got {list(value)!r}")


@frozen(kw_only=True)
class SeedPartition:
    """Part ``index`` of ``of`` contiguous, near-equal parts of the seed rows.

    Attributes:
        index: which part, from 0.
        of: how many parts the rows are split into.
    """

    index: int = attrs.field(validator=[int64, attrs.validators.ge(0)])
    of: int = attrs.field(validator=[int64, attrs.validators.ge(1)])

    def __attrs_post_init__(self) -> None:
        if self.index >= self.of:
            raise ValueError(f"partition index must be below of ({self.of}), got {self.index}")


def _hf_only(inst: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    """A validator: text, given only with a Hugging Face dataset's ``hf://`` path."""
    if value is None:
        return
    text(inst, attribute, value)
    if not inst.path.startswith("hf://"):
        raise ValueError(
            f"{attribute.name} applies to a Hugging Face dataset (path: hf://org/name) only"
        )


def _to_partition(value: Any) -> SeedPartition | None:
    """A converter: a ``{index, of}`` mapping (from Python) as a :class:`SeedPartition`."""
    if isinstance(value, dict):
        return SeedPartition(**value)
    return value  # type: ignore[no-any-return]


@frozen(kw_only=True)
class SeedDatasetConfig:
    """Rows read from a file, a Hugging Face dataset or an in-memory table, whose columns
    every generated column can reference.

    For example:

        seed_dataset:
          path: data/products-*.parquet
          order: shuffled
          index_range: [0, 10000]              # only these rows ...
          partition: {index: 0, of: 4}         # ... and of them, the first quarter

    or every seed file of a folder (sorted by name), each run row taking a row drawn at
    random with replacement:

        seed_dataset:
          path: data/reviews/                  # its .parquet, .csv and .jsonl files
          columns: [title, body]
          replacement: true

    or a Hugging Face dataset's split, read through the local cache:

        seed_dataset: {path: "hf://org/reviews", split: test, config: en, revision: main}

    From Python, a pandas DataFrame or a pyarrow Table is a seed too:
    ``PipelineBuilder().seed_dataset(df)`` or ``SeedDatasetConfig(path=table)``.

    Large parquet seeds are streamed: when all the files are parquet and together larger than
    64 MiB, validation reads only their metadata (schemas, row counts per row group; the
    column names and types, the files' agreement, ``columns``, the rows a slice needs are
    checked), and a run reads, for each of its row groups, only the parquet row groups (and
    only the ``columns``) holding the seed rows it takes, keeping at most 64 MiB of decoded
    rows cached; there is no limit on the file size, but a parquet row group may hold at most
    2 GiB (uncompressed, of the selected columns) and the files at most 1,000,000 row groups.
    A streamed row group found broken during the run (bytes that are not UTF-8, a file changed
    since validation) fails the rows that need it and stops the run with an error naming the
    file (rows already written are kept: fix the file and resume). Other
    seeds (CSV, JSONL, smaller parquet files, in-memory tables, Hugging Face datasets) are
    read whole when the pipeline is validated, at most 2 GiB.

    Long records are fine: one JSONL line, or one CSV row (line breaks inside its quoted
    fields included), may hold up to 64 MiB, so a seed of whole papers, code files or
    transcripts reads as it is (64 MiB of text is far beyond any model's context window).
    A file of short records is read as cheaply as ever; one with records over about 1 MiB
    costs a second read of the file, with read blocks grown to fit its longest record. A
    record over 64 MiB fails validation with an error naming the file and the line the
    record starts on: split such values over several rows, or convert the file to parquet,
    which has no per-record bound (a single value still has to fit a 2 GiB row group). A
    ``.json`` seed is read as JSON Lines, so a file holding one big JSON array is refused
    the same way.

    Attributes:
        path: a parquet, CSV or JSONL file, a glob of them, or a folder (its files with those
            extensions, not its subfolders, sorted by name), concatenated in sorted order;
            relative paths are resolved against the config file's folder when loaded from a
            file. Checked when the pipeline is validated: at most 10,000 files; a CSV or
            JSONL file that does not parse cleanly (an unterminated quote, a row with more or
            fewer fields than the header, text that is not UTF-8) or seed data without rows
            is a configuration error (see above for what is read whole and what streamed).
            In Python, a pandas DataFrame or a pyarrow Table (at most 2 GiB): the config then
            holds ``memory://<fingerprint>``, a SHA-256 of the table's schema and content,
            which ``config_hash`` covers (resuming a run with other rows is refused) and a
            dumped config shows; such a config loaded in another process needs the table
            given again.
            ``hf://org/name`` is a Hugging Face dataset, read with the ``datasets`` package
            (``pip install 'gridloom[hf]'``) through its cache, offline when
            ``HF_DATASETS_OFFLINE=1``; ``hf://`` followed by a folder written by
            ``save_to_disk`` reads that folder. A dataset that cannot be loaded (missing, or
            not cached while offline) fails validation.
        format: ``auto`` picks by file extension (ignored for an in-memory table or a Hugging
            Face dataset); in a folder, only files of the given format are read.
        order: ``ordered`` keeps file order (the same rows whether read whole or streamed).
            ``shuffled`` permutes, deterministically under ``run.seed``, each pass over the
            rows anew: a seed read whole is permuted uniformly; a streamed seed has its
            parquet row groups permuted, then the rows permuted within each window of four
            consecutive (permuted) row groups, so a run row group reads a few row groups only
            (each row still comes once per pass, but rows of distant row groups never meet in
            one window).
        cycle: start again from the top when the run needs more rows than the file has;
            with ``cycle: false`` such a run is refused.
        columns: the subset of the file's columns to use; all of them when empty.
        index_range: ``[start, stop]``: use only rows ``start`` to ``stop - 1`` (from 0);
            ``stop`` may not pass the number of rows.
        partition: ``{index: i, of: n}``: split the rows (those of ``index_range`` when
            given) into ``n`` contiguous parts of near-equal size (part ``i`` holds rows
            ``i * N // n`` to ``(i + 1) * N // n - 1``) and use part ``i`` only, so each
            shard of a distributed run reads its own rows. ``order`` and ``cycle`` apply
            to the rows kept. From parquet files, a slice (``index_range`` or ``partition``)
            reads and checks only the row groups holding its rows.
        replacement: each run row takes a row drawn uniformly at random (with replacement)
            from the rows kept, deterministically under ``run.seed`` and the run row group
            (``order`` and ``cycle`` then do not apply: any number of rows can be drawn). For
            a streamed seed, each run row group first draws four parquet row groups (each
            with probability proportional to its rows), and each of its rows one of those
            four, then a row of it: every row is still equally likely, but the rows of one
            run row group come from at most four parquet row groups.
        split: the split of a Hugging Face dataset (``train`` when unset).
        config: the configuration (subset) name of a Hugging Face dataset.
        revision: the git revision (branch, tag or commit) of a Hugging Face dataset.
    """

    path: str = attrs.field(
        converter=seed_path, validator=attrs.validators.and_(attrs.validators.min_len(1), text)
    )
    format: Literal["auto", "parquet", "csv", "jsonl"] = "auto"
    order: Literal["ordered", "shuffled"] = "ordered"
    cycle: bool = True
    columns: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    index_range: tuple[int, ...] | None = attrs.field(
        default=None,
        converter=attrs.converters.optional(to_tuple),
        validator=_check_index_range,
    )
    partition: SeedPartition | None = attrs.field(default=None, converter=_to_partition)
    replacement: bool = False
    split: str | None = attrs.field(default=None, validator=_hf_only)
    config: str | None = attrs.field(default=None, validator=_hf_only)
    revision: str | None = attrs.field(default=None, validator=_hf_only)


#: The fields every column has, named at the column level (not under its kind's key).
_COLUMN_FIELDS = frozenset(a.name for a in attrs.fields(ColumnConfig))


@frozen(kw_only=True)
class PipelineConfig:
    """A whole pipeline: where models live, which columns to generate, how to run.

    Construction checks what can be checked without parsing templates: that every field of
    every part holds what a config file could (so a pipeline made in Python loads back from
    its run's ``config.yaml``), unique column and model names, model aliases pointing at known
    providers. Reference, cycle and template checks
    happen when the pipeline is compiled (``gridloom.validate``), still before any request.

    Attributes:
        columns: the columns, in any order (references decide the execution order).
        providers: where models are served.
        models: model aliases the columns use.
        seed_dataset: rows read from a file, whose columns every column can reference.
        processors: steps that reshape each finished row group before it is written
            (``drop_columns``, ``rename``, ``schema_transform``), in order.
        constraints: comparisons every output row satisfies, each between a sampler column
            and another column or a constant (``{column: hi, op: ">", other: lo}``,
            ``{column: age, op: ">=", value: 18}``), enforced by redrawing the sampler column
            in the rows that break them; see :class:`~gridloom.config.Constraint`.
        run: how the run is executed.
    """

    columns: tuple[ColumnConfig, ...] = attrs.field(converter=to_tuple)
    providers: tuple[ProviderConfig, ...] = attrs.field(default=(), converter=to_tuple)
    models: tuple[ModelConfig, ...] = attrs.field(default=(), converter=to_tuple)
    seed_dataset: SeedDatasetConfig | None = None
    processors: tuple[ProcessorConfig, ...] = attrs.field(default=(), converter=to_tuple)
    run: RunConfig = attrs.field(factory=RunConfig)
    constraints: tuple[Constraint, ...] = attrs.field(default=(), converter=to_tuple)

    def __attrs_post_init__(self) -> None:
        problems = self._type_issues()
        if not self.columns and self.seed_dataset is None:
            problems.append(
                ConfigIssue(
                    "a pipeline needs at least one column or a seed_dataset", None, "columns"
                )
            )
        seen: set[str] = set()
        for col in self.columns:
            if col.name in seen:
                problems.append(ConfigIssue("duplicate column name", col.name, "name"))
            why = TEMPLATE_RESERVED_NAMES.get(col.name)
            if why is not None:
                problems.append(
                    ConfigIssue(
                        f"the name is reserved: {why}; rename the column",
                        col.name,
                        "name",
                    )
                )
            seen.add(col.name)
        providers: set[str] = set()
        for i, provider in enumerate(self.providers):
            if provider.name in providers:
                problems.append(
                    ConfigIssue(
                        f"duplicate provider name {provider.name!r}", None, f"providers[{i}].name"
                    )
                )
            providers.add(provider.name)
        aliases: set[str] = set()
        for i, model in enumerate(self.models):
            if model.alias in aliases:
                problems.append(
                    ConfigIssue(
                        f"duplicate model alias {model.alias!r}", None, f"models[{i}].alias"
                    )
                )
            aliases.add(model.alias)
            if model.provider not in providers:
                problems.append(
                    ConfigIssue(
                        f"model {model.alias!r} names unknown provider {model.provider!r}"
                        f" (known: {', '.join(sorted(providers)) or 'none'})",
                        None,
                        f"models[{i}].provider",
                    )
                )
        kinds = {p.name: p.type for p in self.providers}
        served_by = {m.alias: kinds.get(m.provider) for m in self.models}
        for col in self.columns:
            for field, alias in col.model_aliases().items():
                if alias not in aliases:
                    problems.append(
                        ConfigIssue(
                            f"unknown model alias {alias!r} (known: "
                            f"{', '.join(sorted(aliases)) or 'none — add it under models'})",
                            col.name,
                            field,
                        )
                    )
                elif col.model_endpoint == "embedding" and served_by[alias] == "anthropic":
                    problems.append(
                        ConfigIssue(
                            f"model {alias!r} is served by an Anthropic provider, which has no"
                            " embeddings API; use a model of an OpenAI-compatible provider",
                            col.name,
                            field,
                        )
                    )
        problems.extend(thinking_issues(self.columns, self.providers, self.models))
        if problems:
            raise ConfigError.from_issues(problems)

    def _type_issues(self) -> list[ConfigIssue]:
        """Every value, in every part, that a config file could not hold (see
        :mod:`._typecheck`): a pipeline made in Python holds only what its ``config.yaml``
        can be loaded back with."""
        problems: list[ConfigIssue] = []
        for col in self.columns:
            if not attrs.has(type(col)):
                continue
            for path, message in type_issues(col):
                field = render_path(path)
                if path[0] not in _COLUMN_FIELDS and col.kind:
                    field = f"{col.kind}.{field}"
                problems.append(ConfigIssue(message, col.name, field))
        parts: list[tuple[str, Any]] = [
            ("providers", self.providers),
            ("models", self.models),
            ("processors", self.processors),
            ("constraints", self.constraints),
        ]
        for name, items in parts:
            for index, item in enumerate(items):
                if not attrs.has(type(item)):
                    continue
                for path, message in type_issues(item, (name, index)):
                    problems.append(ConfigIssue(message, None, render_path(path)))
        for name, part in (("seed_dataset", self.seed_dataset), ("run", self.run)):
            if attrs.has(type(part)):
                for path, message in type_issues(part, (name,)):
                    problems.append(ConfigIssue(message, None, render_path(path)))
        return problems

    def column(self, name: str) -> ColumnConfig:
        """The column called ``name``; ``KeyError`` if there is none."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

"""The one error tree of gridloom.

Every exception gridloom raises on purpose derives from :class:`GridloomError`.
Configuration problems also derive from :class:`ValueError`, so code that
already catches ``ValueError`` for bad input keeps working::

    GridloomError
    ├── ConfigError (ValueError)          the pipeline description is wrong
    │   ├── UnknownReferenceError         a template or depends_on names an unknown column,
    │   │                                 or a field a structured column's schema lacks
    │   ├── CycleError                    columns depend on each other in a loop
    │   └── TemplateError                 a Jinja template does not parse, or reaches for what
    │                                     the sandbox refuses (``__class__``, ``.format``, ...)
    ├── GenerationError                   a generator failed on a cell or batch
    │   ├── ValueTypeError                a generated value does not fit the column's dtype
    │   ├── ColumnNotInRow (KeyError)     user code (a custom function, a callable
    │   │                                 validator) read a column its row does not hold: one
    │   │                                 its column's depends_on does not list
    │   ├── InvalidOutput                 model output unusable after the allowed corrections
    │   │   └── AnswerTruncated           the answer was cut at max_tokens and the column's
    │   │                                 ``on_truncated`` is ``drop`` (final) or ``retry``
    │   ├── ConstraintUnmet               a row's sampled value still broke a constraint after
    │   │                                 the allowed redraws
    │   ├── TemplateLimitExceeded         rendering a template went past a limit (its output's
    │   │                                 size, loop iterations, an integer's size, CPU time)
    │   └── SalvageTimeout                a cell re-run in a salvage round outlasted the round
    ├── ModelError                        a model request failed; ``retryable`` says whether
    │   │                                 trying again later may succeed
    │   ├── RateLimited                   429 (``retry_after`` when the provider said)
    │   ├── ProviderUnavailable           5xx, or 529 overloaded
    │   ├── ProviderTimeout               no answer in time (or 408)
    │   ├── ConnectionFailed              refused, reset or dropped connection
    │   │   └── TLSFailed                 TLS with the server cannot work as configured (it
    │   │       │                         speaks plain HTTP, no common protocol version):
    │   │       │                         final, it will not pass by itself
    │   │       └── CertificateRejected   the server's TLS certificate failed verification
    │   ├── MalformedResponse             the reply is not the API's documented shape
    │   ├── EmptyAnswer                   the reply holds no answer: cut at max_tokens before
    │   │   │                             any content, withheld by a content filter, a refusal
    │   │   └── IncompleteAnswer          the answer is partial: the server gave up mid-answer
    │   │                                 (abort, error: retryable) or a content filter cut it
    │   ├── ResponseTooLarge              the reply is longer than ``max_response_bytes``
    │   └── BadRequest                    any other 4xx
    │       ├── AuthenticationFailed      401/403: missing or wrong API key
    │       ├── QuotaExhausted            the account's quota or credit is spent (402, or a
    │       │                             429 saying ``insufficient_quota``): no rate limit
    │       └── ContextLengthExceeded     the prompt does not fit the model
    ├── StorageError                      the output directory cannot be used
    │   └── OutputExistsError             the directory already holds a run
    └── RunError                          a run could not complete
        └── ClusterError                  a sharded run's cluster cannot be used (Ray missing,
                                          unreachable, output not shared), or a shard failed

Messages name the column, model or file involved. A :class:`ConfigError` lists every problem
found (``issues``, one :class:`ConfigIssue` each), not only the first. :func:`is_retryable`
tells a failure that may pass (the cell is tried again later) from one that will not (its row
is dropped).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._attrs import frozen

__all__ = [
    "AnswerTruncated",
    "AuthenticationFailed",
    "BadRequest",
    "CertificateRejected",
    "ClusterError",
    "ColumnNotInRow",
    "ConfigError",
    "ConfigIssue",
    "ConnectionFailed",
    "ConstraintUnmet",
    "ContextLengthExceeded",
    "CycleError",
    "EmptyAnswer",
    "GenerationError",
    "GridloomError",
    "IncompleteAnswer",
    "InvalidOutput",
    "MalformedResponse",
    "ModelError",
    "OutputExistsError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "QuotaExhausted",
    "RateLimited",
    "ResponseTooLarge",
    "RunError",
    "SalvageTimeout",
    "StorageError",
    "TLSFailed",
    "TemplateError",
    "TemplateLimitExceeded",
    "UnknownReferenceError",
    "ValidationFailed",
    "ValueTypeError",
    "is_retryable",
]


class GridloomError(Exception):
    """Root of every error gridloom raises on purpose."""


@frozen
class ConfigIssue:
    """One problem in a pipeline configuration.

    Attributes:
        message: what is wrong, without the location.
        column: name of the column at fault, when there is one.
        field: dotted path of the field at fault inside the column or section.
        kind: the kind key of that column (``llm_text``, ``custom``, ...), when known: a
            problem found while compiling names the field without it (``prompt``).
    """

    message: str
    column: str | None = None
    field: str | None = None
    kind: str | None = None

    def __str__(self) -> str:
        where = []
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ConfigError(GridloomError, ValueError):
    """The pipeline configuration is invalid.

    ``str(error)`` is the first problem on the first line, then each further problem on a line
    of its own. The exception's type is that of the first problem.

    Attributes:
        column: name of the column at fault in the first problem, when there is one.
        field: dotted path of the field at fault inside the column or section (first problem).
        message: the first problem, without its location.
        issues: every problem found, the first one first.
    """

    def __init__(
        self,
        message: str,
        *,
        column: str | None = None,
        field: str | None = None,
        more: Iterable[ConfigIssue] = (),
    ):
        self.column = column
        self.field = field
        self.message = message
        self.issues: tuple[ConfigIssue, ...] = (ConfigIssue(message, column, field), *more)
        super().__init__(self._render())

    @classmethod
    def from_issues(cls, issues: Iterable[ConfigIssue]) -> ConfigError:
        """One error listing ``issues`` (``"invalid configuration"`` when there are none)."""
        first, *rest = tuple(issues) or (ConfigIssue("invalid configuration"),)
        return cls(first.message, column=first.column, field=first.field, more=rest)

    @staticmethod
    def gather(errors: Iterable[ConfigError]) -> ConfigError:
        """The first of ``errors`` (keeping its type), with the problems of the others added.

        Raises:
            ValueError: ``errors`` is empty.
        """
        first, *rest = errors
        first.add(issue for error in rest for issue in error.issues)
        return first

    def add(self, issues: Iterable[ConfigIssue]) -> None:
        """List further problems after those already held."""
        self.issues = (*self.issues, *issues)
        self.args = (self._render(),)

    def _render(self) -> str:
        first, *rest = self.issues
        return "\n".join([str(first), *(f"  {issue}" for issue in rest)])

    def __str__(self) -> str:
        return self._render()


class UnknownReferenceError(ConfigError):
    """A template or ``depends_on`` names a column that does not exist."""


class CycleError(ConfigError):
    """Columns depend on each other in a loop; the message spells the loop out."""

    def __init__(self, cycle: list[str]):
        self.cycle = list(cycle)
        super().__init__("dependency cycle: " + " -> ".join(cycle), column=cycle[0])


class TemplateError(ConfigError):
    """A Jinja template in the configuration does not parse, or uses what templates may not:
    private or internal attributes (``x.__class__``, ``x._name``, ``mro``), ``str.format``,
    ``self``, ``include``/``import``/``extends``."""


class GenerationError(GridloomError):
    """A generator failed on a cell or a batch; the row (or rows) are dropped."""


class ValueTypeError(GenerationError, TypeError):
    """A generated value cannot be stored as the column's declared dtype."""


class ColumnNotInRow(GenerationError, KeyError):
    """User code (a ``custom`` column's function, a ``callable`` validator) read a column that
    the row (or a batch's columns) it was handed does not hold: a row holds only the columns
    its column's ``depends_on`` lists (and those its templates read). The message names the
    column asked for, whether the pipeline has it, the column whose ``depends_on`` must list
    it, and what the row holds. A :class:`KeyError`, so code that catches one for a missing
    key keeps working; ``args[0]`` (and ``key``) is the key asked for."""

    def __init__(self, key: object, message: str) -> None:
        super().__init__(key)
        self.key = key
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.key, self.message)


class InvalidOutput(GenerationError):
    """A model's output could not be used (unparseable, or invalid against the column's schema)
    even after the allowed correction attempts."""


class AnswerTruncated(InvalidOutput):
    """A model's answer was cut at ``max_tokens`` (``finish_reason: length``; Anthropic's
    ``max_tokens``) and its column does not keep such answers (``on_truncated``): with
    ``drop`` the failure is final and drops the row; with ``retry`` it may pass (a sampled
    answer may be shorter next time), so the cell is asked again within the run's retry
    budget (``max_cell_attempts``, then salvage rounds) before its row is dropped.

    Attributes:
        max_tokens: the limit the request sent (``None``: the server's own).
        retryable: whether the cell is asked again (``on_truncated: retry``).
    """

    def __init__(self, message: str, *, max_tokens: int | None, retryable: bool):
        self.max_tokens = max_tokens
        self.retryable = retryable
        super().__init__(message)


class ValidationFailed(GenerationError):
    """A value a validator found invalid dropped its row: a ``validate`` column with
    ``drop_invalid: true``, or a model column whose answers its ``validate_with`` validators
    still rejected after the allowed correction attempts. The message quotes the validators'
    messages."""


class ConstraintUnmet(GenerationError):
    """A sampler column's value in a row still broke one of the pipeline's ``constraints``
    after its ``max_attempts`` redraws; the row is dropped. The message names the constraint
    and the values compared."""


class TemplateLimitExceeded(GenerationError):
    """Rendering a template for one cell went past one of its limits: the rendered text (or a
    value built on the way) is too long, its loops ran too many iterations, an integer grew
    too large, or it used up its CPU time budget. The message names the column, the field
    and the limit (``run.template_*``); the row is dropped."""


class SalvageTimeout(GenerationError):
    """A cell re-run in a salvage round did not finish before the round's deadline."""


class ModelError(GridloomError):
    """A request to a model failed.

    Attributes:
        retryable: whether the same request may succeed later (rate limits, server errors,
            timeouts, connection failures) or never will (bad requests, authentication).
        status: the HTTP status, when there was a response.
        provider: the provider's name; model: the model name.

    Messages never contain API keys or request headers.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        provider: str | None = None,
        model: str | None = None,
    ):
        self.status = status
        self.provider = provider
        self.model = model
        where = "/".join(x for x in (provider, model) if x)
        super().__init__(f"{where}: {message}" if where else message)


class RateLimited(ModelError):
    """HTTP 429: the provider refuses more requests for now.

    Attributes:
        retry_after: seconds the provider asked to wait (from ``Retry-After``), if it said.
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any):
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class ProviderUnavailable(ModelError):
    """HTTP 5xx (or 529): the provider failed or is overloaded."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any):
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class ProviderTimeout(ModelError):
    """No complete answer within the model's timeout (or HTTP 408)."""

    retryable = True


class ConnectionFailed(ModelError):
    """The connection could not be made, or broke before the answer was complete."""

    retryable = True


class TLSFailed(ConnectionFailed):
    """The TLS handshake failed in a way trying again cannot mend: the server answers plain
    HTTP on an ``https://`` endpoint (``WRONG_VERSION_NUMBER``), or client and server share
    no protocol version. Final, unlike other connection failures, and it stops the run at
    once; the message suggests ``http://`` or the provider's TLS settings."""

    retryable = False


class CertificateRejected(TLSFailed):
    """The server's TLS certificate failed verification (an unknown CA, another host's name,
    expired): trying again cannot help, so it is final, unlike other connection failures. The
    message says why; a provider's ``verify`` (a CA bundle) or the system's trust fixes it."""

    retryable = False


class MalformedResponse(ModelError):
    """The provider answered, but not in the API's documented shape."""

    retryable = True


class EmptyAnswer(ModelError):
    """The provider answered in the documented shape, but with no usable answer: no content
    (or only whitespace) and no tool calls. The message says why, from the reply:
    ``finish_reason: length`` (the model ran out of tokens, e.g. reasoning, before answering:
    raise ``max_tokens``), ``content_filter``, the model's refusal (quoted, cut short), or
    nothing reported.

    Attributes:
        reason: ``length``, ``content_filter``, ``refusal`` or ``empty`` (none of those).
        input_tokens, output_tokens: the usage the reply reported (0 when none): the
            provider served, and bills, the request all the same, so a token budget is
            charged with it and the model's usage counts it.

    Only ``empty`` is retryable (a sampled answer may differ next time); the same request
    would be cut, filtered or refused again, so the others are final and drop the row.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        **kwargs: Any,
    ):
        self.reason = reason
        self.retryable = reason == "empty"
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        super().__init__(message, **kwargs)


class IncompleteAnswer(EmptyAnswer):
    """The reply holds the start of an answer that was not finished: the server gave up
    generating it (``finish_reason: abort`` from vLLM or SGLang, ``error`` from OpenRouter and
    other routers), a content filter cut it short (``content_filter``, as Azure OpenAI
    does), or the model refused part-way (Anthropic's ``stop_reason: refusal`` after some
    text, or OpenAI's ``refusal`` beside content). The partial text is never stored as if
    complete.

    Attributes:
        reason: ``abort``, ``error`` (retryable: the server's trouble, the next try may
            finish), ``content_filter`` or ``refusal`` (final: the same request would be cut
            again).
    """

    def __init__(self, message: str, *, reason: str, **kwargs: Any):
        super().__init__(message, reason=reason, **kwargs)
        self.retryable = reason in ("abort", "error")


class ResponseTooLarge(ModelError):
    """The reply is longer than the model's ``max_response_bytes``; reading stopped there, so
    the same request would only fetch as much again. The message names the alias, the cap
    and how to raise it.

    Attributes:
        limit: the cap, in bytes.
    """

    retryable = False

    def __init__(self, message: str, *, limit: int, **kwargs: Any):
        self.limit = limit
        super().__init__(message, **kwargs)


class BadRequest(ModelError):
    """HTTP 4xx other than 401/403/408/429: sending the same request again will not help."""


class AuthenticationFailed(BadRequest):
    """HTTP 401/403: the API key is missing, wrong, or not allowed this model."""


class QuotaExhausted(BadRequest):
    """The provider refused because the account's quota, credit or billing is exhausted (HTTP
    402, or a 429 or 400 whose error code says so, e.g. OpenAI's ``insufficient_quota``):
    unlike a rate limit, waiting does not help, so it is final and stops a run at once."""


class ContextLengthExceeded(BadRequest):
    """The prompt (plus the requested output) is longer than the model accepts."""


class StorageError(GridloomError):
    """The output directory cannot be read or written as a gridloom run."""


class OutputExistsError(StorageError):
    """The output directory already holds a run and neither resume nor overwrite was asked."""


class RunError(GridloomError):
    """A run could not complete."""


class ClusterError(RunError):
    """A sharded run (``executor: ray``) cannot use its cluster, or one of its shards kept
    failing; the message names the cluster or the shard, and the cause."""


def is_retryable(error: BaseException) -> bool:
    """Whether a cell that failed with ``error`` may succeed if tried again later: a model
    error marked retryable (429 after the throttle's own retries, 5xx, timeouts, dropped
    connections, malformed replies), an answer cut at ``max_tokens`` in a column with
    ``on_truncated: retry`` (:class:`AnswerTruncated`), or a salvage round's timeout.
    Everything else — bad requests, authentication, output still invalid after corrections,
    generator exceptions, template errors — is final."""
    if isinstance(error, ModelError | AnswerTruncated):
        return error.retryable
    return isinstance(error, SalvageTimeout)

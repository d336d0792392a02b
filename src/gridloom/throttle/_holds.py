"""Holds a server asks for: how long one may last, and how it is told.

A ``Retry-After`` (in seconds or as an HTTP date), a ``retry-after-ms`` or a quota header's
reset holds admissions to a model; a server's clock or a hostile one could ask for any wait,
so every hold is bounded here, and a long one is a warning naming the model (a run whose
progress stops for a minute must say why).
"""

from __future__ import annotations

import logging

__all__ = ["LONG_HOLD_SECONDS", "MAX_SERVER_HOLD_SECONDS", "log_hold", "server_hold"]

log = logging.getLogger("gridloom.throttle")

#: The longest wait a server's header may impose (``Retry-After`` in seconds or as an HTTP
#: date, ``retry-after-ms``, a quota header's reset): a longer one is waited out this long,
#: then the request is tried again (and refused again, if the server meant it).
MAX_SERVER_HOLD_SECONDS = 60.0
#: A hold at least this long is logged as a warning (shorter ones at DEBUG: a cut's own INFO
#: line names its cooldown): long enough for a run's progress to look stuck.
LONG_HOLD_SECONDS = 10.0


def server_hold(seconds: float) -> float:
    """A wait a server asked for (a negative one, from a date in the past, is 0), at most
    :data:`MAX_SERVER_HOLD_SECONDS`."""
    return min(max(0.0, seconds), MAX_SERVER_HOLD_SECONDS)


def log_hold(label: str, asked: float, hold: float) -> None:
    """Say that a refusal's ``Retry-After`` of ``asked`` seconds holds admissions for
    ``hold`` (:func:`server_hold` of it); ``label`` prefixes the line (the model's name)."""
    if asked > hold:
        log.warning(
            "%sa hold of %.0f s is in effect: the server asked to wait %.0f s"
            " (Retry-After), capped at MAX_SERVER_HOLD_SECONDS = %.0f s",
            label,
            hold,
            asked,
            MAX_SERVER_HOLD_SECONDS,
        )
    else:
        level = logging.WARNING if hold >= LONG_HOLD_SECONDS else logging.DEBUG
        log.log(
            level, "%sa hold of %.1f s is in effect, as the server asked (Retry-After)", label, hold
        )

"""Exact Poisson and binomial draws from a ``random.Random``.

Python 3.11's ``random`` has neither (``binomialvariate`` arrived in 3.12), so these follow the
published algorithms: multiplication of uniforms (Knuth) and PTRS (Hörmann 1993, "The
transformed rejection method for generating Poisson random variables") for Poisson; inversion
and BTRS (Hörmann 1993, "The generation of binomial random variates") for binomial. Each
factory precomputes the constants for its parameters and returns a function of the stream.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

__all__ = ["binomial_sampler", "poisson_sampler"]

Draw = Callable[[random.Random], int]

#: Means (Poisson) or n·p (binomial) from which transformed rejection is used.
_REJECTION_THRESHOLD = 10.0


def poisson_sampler(mean: float) -> Draw:
    """A function drawing Poisson(``mean``) counts from a stream; ``mean`` must be > 0."""
    if not mean > 0 or not math.isfinite(mean):
        raise ValueError(f"Poisson mean must be finite and > 0, got {mean!r}")
    if mean < _REJECTION_THRESHOLD:
        return _poisson_knuth(mean)
    return _poisson_ptrs(mean)


def _poisson_knuth(mean: float) -> Draw:
    limit = math.exp(-mean)

    def draw(rng: random.Random) -> int:
        count = 0
        product = rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
        return count

    return draw


def _poisson_ptrs(mean: float) -> Draw:
    log_mean = math.log(mean)
    b = 0.931 + 2.53 * math.sqrt(mean)
    a = -0.059 + 0.02483 * b
    log_inv_alpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    v_r = 0.9277 - 3.6224 / (b - 2)

    def draw(rng: random.Random) -> int:
        while True:
            u = rng.random() - 0.5
            v = rng.random()
            us = 0.5 - abs(u)
            if us <= 0.0 or v <= 0.0:
                continue
            k = math.floor((2 * a / us + b) * u + mean + 0.43)
            if us >= 0.07 and v <= v_r:
                return k
            if k < 0 or (us < 0.013 and v > us):
                continue
            lhs = math.log(v) + log_inv_alpha - math.log(a / (us * us) + b)
            if lhs <= -mean + k * log_mean - math.lgamma(k + 1):
                return k

    return draw


def binomial_sampler(n: int, p: float) -> Draw:
    """A function drawing Binomial(``n``, ``p``) counts from a stream."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"binomial needs n >= 0 and 0 <= p <= 1, got n={n!r}, p={p!r}")
    if n == 0 or p == 0.0:
        return lambda _rng: 0
    if p == 1.0:
        return lambda _rng: n
    if p > 0.5:
        mirrored = binomial_sampler(n, 1.0 - p)
        return lambda rng: n - mirrored(rng)
    if n * p < _REJECTION_THRESHOLD:
        return _binomial_inversion(n, p)
    return _binomial_btrs(n, p)


def _binomial_inversion(n: int, p: float) -> Draw:
    q = 1.0 - p
    ratio = p / q
    a = (n + 1) * ratio
    # (1 - p)**n through log1p: for a tiny p, 1 - p rounds to 1.0 and q**n would be 1.
    p_zero = math.exp(n * math.log1p(-p))

    def draw(rng: random.Random) -> int:
        while True:
            u = rng.random()
            mass = p_zero
            k = 0
            while u > mass:
                u -= mass
                k += 1
                if k > n:
                    break  # rounding left a sliver of u unassigned: draw again
                mass *= a / k - ratio
            else:
                return k

    return draw


def _binomial_btrs(n: int, p: float) -> Draw:
    q = 1.0 - p
    spq = math.sqrt(n * p * q)
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = n * p + 0.5
    v_r = 0.92 - 4.2 / b
    alpha = (2.83 + 5.1 / b) * spq
    log_odds = math.log(p / q)
    mode = math.floor((n + 1) * p)
    log_mode = math.lgamma(mode + 1) + math.lgamma(n - mode + 1)

    def draw(rng: random.Random) -> int:
        while True:
            u = rng.random() - 0.5
            v = rng.random()
            us = 0.5 - abs(u)
            if us <= 0.0 or v <= 0.0:
                continue
            k = math.floor((2 * a / us + b) * u + c)
            if k < 0 or k > n:
                continue
            if us >= 0.07 and v <= v_r:
                return k
            log_v = math.log(v * alpha / (a / (us * us) + b))
            bound = log_mode - math.lgamma(k + 1) - math.lgamma(n - k + 1) + (k - mode) * log_odds
            if log_v <= bound:
                return k

    return draw

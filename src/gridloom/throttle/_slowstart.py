"""The slow start of an AIMD controller: when it may double the limit, and whether answers slow.

Pure bookkeeping (no clock, no limit of its own): :class:`~gridloom.throttle.AIMDController`
asks it and applies the answers. Rules (numbers from :class:`~gridloom.config.ThrottleConfig`):

* **Doubling**: the limit doubles at most once per ``slow_start_seconds``, and only once it
  has been *used*: requests in flight reached it since the last doubling. A doubling due while
  the limit is not used waits until it is; the next one is a period later.
* **Latency**: the mean latency of the first :data:`BASELINE_SAMPLES` successes is the
  baseline; later ones feed a moving average (weight :data:`SMOOTHING`). Once that average is
  beyond ``slow_start_latency_factor`` times the baseline the provider is queueing: the slow
  start ends. With lognormal noise of sigma 0.3 the ratio of the two strays by about 9 % (one
  sigma: 7.5 % from the baseline, 5.4 % from the average), so a factor of 2 is over seven
  sigmas away (the largest ratio in 2,000 simulated runs of 3,000 answers was 1.59).
"""

from __future__ import annotations

__all__ = ["BASELINE_SAMPLES", "SMOOTHING", "SlowStart"]

#: Successes whose mean latency is the baseline.
BASELINE_SAMPLES = 16
#: Weight of one success in the moving average of later latencies.
SMOOTHING = 1 / 16


class SlowStart:
    """The state of one slow start.

    Args:
        start: clock time it begins; the first doubling is due a period later.
        period: ``slow_start_seconds`` (above 0).
        factor: ``slow_start_latency_factor`` (above 1).
    """

    __slots__ = ("_baseline", "_factor", "_period", "_samples", "_smoothed", "due", "used")

    def __init__(self, *, start: float, period: float, factor: float):
        self._period = period
        self._factor = factor
        #: Earliest clock time of the next doubling.
        self.due = start + period
        #: Whether requests in flight reached the limit since the last doubling.
        self.used = False
        self._samples = 0
        self._baseline = 0.0
        self._smoothed = 0.0

    def doubling_due(self, now: float) -> bool:
        """Whether the limit doubles now (the period has passed and the limit was used)."""
        return self.used and now >= self.due

    def doubled(self, now: float) -> None:
        """The limit doubled at ``now``: the next doubling is due a period after the one
        that fell due (after ``now``, if that one waited for the limit to be used)."""
        due = self.due + self._period
        self.due = due if due > now else now + self._period
        self.used = False

    def slowed(self, latency: float) -> float | None:
        """Take one success's latency; the ratio of the moving average to the baseline if it
        is now beyond the factor (the slow start should end), else ``None``."""
        self._samples += 1
        if self._samples <= BASELINE_SAMPLES:
            self._baseline += (latency - self._baseline) / self._samples
            self._smoothed = self._baseline
            return None
        self._smoothed += (latency - self._smoothed) * SMOOTHING
        if self._baseline > 0 and self._smoothed > self._factor * self._baseline:
            return self._smoothed / self._baseline
        return None

    @property
    def baseline(self) -> float | None:
        """The mean latency of the first successes, once there are enough of them."""
        return self._baseline if self._samples >= BASELINE_SAMPLES else None

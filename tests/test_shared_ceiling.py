"""The board's throttle policy for a sharded run (pure): one AIMD ceiling learnt from every
shard's reports, handed out as caps that add up to it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gridloom.run._shard import peak_in_flight
from gridloom.run._shards import ShardThrottle, SharedCeiling, cap_share

# One report: (shard, peak in flight, new 429s, ended, seconds since the previous report).
_report = st.tuples(
    st.integers(0, 3), st.integers(0, 40), st.integers(0, 3), st.booleans(), st.floats(0, 5)
)


@given(st.integers(4, 64), st.integers(1, 4), st.lists(_report, max_size=120))
def test_caps_stay_within_each_share_and_add_up_to_the_ceiling(
    total: int, shards: int, reports: list[tuple[int, int, int, bool, float]]
) -> None:
    """Whatever the shards report: a cap is between 1 and the shard's own share of
    ``max_parallel_requests`` (exactly that share before the first refusal); the active
    shards' caps add up to at most the ceiling, which never falls below one slot per active
    shard; only a refusal lowers the ceiling and a quiet report raises it by one at most."""
    policy = SharedCeiling(probe_seconds=3.0, settle=1.0)
    counts = dict.fromkeys(range(shards), 0)
    ended: set[int] = set()
    now = 0.0
    for shard, peak, refused, end, wait in reports:
        shard %= shards
        if shard in ended:
            continue
        now += wait
        counts[shard] += refused
        share = cap_share(total, shards, shard)
        before = policy.ceiling
        policy.report(
            shard,
            ShardThrottle(cap=share, peak=peak, rate_limited=counts[shard], active=not end),
            now,
        )
        if end:
            ended.add(shard)
        after = policy.ceiling
        if before is not None and after is not None:
            if refused:
                assert after <= max(before, len(set(range(shards)) - ended))
            else:
                assert after <= before + 1
        active = [s for s in range(shards) if s not in ended and s in policy._latest]
        caps = {s: policy.cap(s) for s in policy._latest}
        for s, cap in caps.items():
            own = cap_share(total, shards, s)
            assert 1 <= cap <= own
            if after is None:
                assert cap == own
        if after is not None and active:
            assert after >= len(active)
            assert sum(caps[s] for s in active) <= after


def _simulate(capacity: int, shards: int, seconds: int, share: int) -> tuple[SharedCeiling, int]:
    """Shards that fill their caps against an endpoint refusing beyond ``capacity`` at once,
    reporting once a second; the policy and the seconds with a refusal in the last half."""
    policy = SharedCeiling(probe_seconds=20.0, settle=2.0)
    counts = dict.fromkeys(range(shards), 0)
    late = 0
    caps = dict.fromkeys(range(shards), share)  # what each shard was handed, filled
    for second in range(seconds):
        over = sum(caps.values()) > capacity
        late += over and second >= seconds // 2
        running = dict(caps)
        for s in range(shards):
            counts[s] += over  # each shard sees a refusal when the sum is over
            caps[s] = policy.report(
                s,
                ShardThrottle(cap=share, peak=running[s], rate_limited=counts[s], limit=running[s]),
                float(second),
            )
    return policy, late


@given(st.integers(2, 24), st.integers(1, 4))
def test_the_ceiling_settles_at_the_capacity(capacity: int, shards: int) -> None:
    """Against a fixed capacity the shared ceiling comes down to it and stays within one of
    it (a refused probe every while), so the shards' caps add up to the capacity and
    refusals are rare once it is learnt."""
    share = 32
    capacity = max(capacity, shards)
    policy, late = _simulate(capacity, shards, 200, share)
    assert policy.ceiling is not None
    assert capacity <= policy.ceiling <= capacity + 1 or capacity >= shards * share
    assert late <= 8  # probes only: their wait doubles


def test_a_shard_that_ends_hands_its_share_to_the_others() -> None:
    """The ceiling comes from the shards' peaks and limits at a refusal and is split among
    the shards still running."""
    policy = SharedCeiling()
    for s in range(2):
        assert policy.report(s, ShardThrottle(cap=16, peak=16, rate_limited=0), 0.0) == 16
    policy.report(0, ShardThrottle(cap=16, peak=9, rate_limited=3, limit=5), 1.0)
    assert policy.ceiling == 24  # 9 + 16 (the other's cap, its limit unknown) - 1
    policy.report(1, ShardThrottle(cap=16, peak=5, rate_limited=0, limit=4), 1.5)
    policy.report(0, ShardThrottle(cap=16, peak=5, rate_limited=9, limit=3), 4.0)
    assert policy.ceiling == 9  # 5 + the other's peak 5 - 1
    assert (policy.cap(0), policy.cap(1)) == (5, 4)
    policy.report(1, ShardThrottle(cap=16, peak=4, rate_limited=0, active=False), 5.0)
    assert policy.cap(0) == 9
    assert policy.cap(1) == 16  # ended: its own share, unused


@given(
    st.lists(st.tuples(st.floats(0, 100), st.integers(0, 50)), min_size=1, max_size=40),
    st.floats(0, 100),
)
def test_peak_in_flight_is_the_most_at_once_since(
    changes: list[tuple[float, int]], since: float
) -> None:
    """A shard's peak since its last report: the most in flight among the history entries
    after ``since`` and the one in force at ``since``."""
    history = [(t, 8, n) for t, n in sorted(changes)]
    before = [n for t, _, n in history if t <= since]
    later = [n for t, _, n in history if t > since]
    assert peak_in_flight(history, since) == max([*before[-1:], *later])

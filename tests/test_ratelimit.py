from __future__ import annotations

from gateway.ratelimit import RateLimiter


def test_burst_then_sustained_rate_per_elevator() -> None:
    limiter = RateLimiter(rate=2.0, burst=5.0)
    assert all(limiter.check("A", 0.0).allowed for _ in range(5))
    refused = limiter.check("A", 0.0)
    assert not refused.allowed and refused.first_refusal
    again = limiter.check("A", 0.1)
    assert not again.allowed and not again.first_refusal  # the same episode
    assert limiter.check("B", 0.1).allowed  # others are not affected
    assert limiter.check("A", 0.6).allowed  # refilled at 2/s
    assert not limiter.check("A", 0.6).allowed
    assert limiter.check("A", 0.6).first_refusal is False
    assert limiter.check("A", 100.0).allowed  # refills up to the burst only
    assert sum(limiter.check("A", 100.0).allowed for _ in range(10)) == 4


def test_forgetting_full_buckets_changes_no_decision() -> None:
    limiter = RateLimiter(rate=1.0, burst=2.0)
    assert limiter.check("A", 0.0).allowed and limiter.check("B", 0.0).allowed
    assert limiter.check("B", 0.0).allowed
    limiter.forget_full(1.5)  # A is full again, B holds 1.5 tokens
    assert len(limiter) == 1
    assert limiter.check("B", 1.5).allowed and not limiter.check("B", 1.5).allowed


def test_full_buckets_are_forgotten_as_time_goes_on() -> None:
    """A fleet at its cadence leaves the limiter holding only the buckets taken lately."""
    limiter = RateLimiter(rate=20.0, burst=600.0)
    for n in range(1000):
        assert limiter.check(f"E{n}", 0.5).allowed
    assert len(limiter) == 1000
    assert limiter.check("E0", 10.0).allowed
    assert len(limiter) == 1  # E0's, taken just now


def test_forgetting_as_time_goes_on_keeps_the_buckets_still_refilling() -> None:
    limiter = RateLimiter(rate=1.0, burst=2.0)
    assert limiter.check("A", 0.0).allowed and limiter.check("A", 0.0).allowed
    refused = limiter.check("A", 0.0)
    assert not refused.allowed and refused.first_refusal
    assert limiter.check("B", 1.2).allowed  # forgets the full ones; A holds 1.2 tokens
    assert limiter.check("A", 1.2).allowed  # (forgotten, it would hold 2)
    again = limiter.check("A", 1.2)
    assert not again.allowed and again.first_refusal  # a new episode: it was allowed since

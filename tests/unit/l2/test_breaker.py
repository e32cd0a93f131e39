"""The breaker's ``closed`` flag, which the hot path reads, always says what its state says."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tiercache._l2.breaker import CLOSED, CircuitBreaker

steps = st.lists(st.sampled_from(["failure", "success", "allow", "tick", "fork"]), max_size=30)


@given(steps=steps, threshold=st.integers(min_value=1, max_value=3))
def test_closed_follows_the_state_through_any_run_of_outcomes(steps: list[str], threshold: int) -> None:
    now = [0.0]
    closings: list[int] = []
    breaker = CircuitBreaker(
        "test", threshold=threshold, clock=lambda: now[0], on_close=lambda: closings.append(1)
    )
    try:
        was_closed = True
        for step in steps:
            if step == "failure":
                breaker.failure(TimeoutError("slow"))
            elif step == "success":
                breaker.success()
            elif step == "allow":
                breaker.allow()
            elif step == "tick":
                now[0] += 0.5  # (past any first backoff: the next allow() is the half-open probe)
            else:
                breaker._reset_after_fork()
            assert breaker.closed == (breaker.state == CLOSED) == (not breaker.is_open)
            if step == "success" and not was_closed:
                assert closings, "closing it did not say so (a missed invalidation waits on that)"
                closings.clear()
            was_closed = breaker.closed
    finally:
        breaker.stop(timeout=0)

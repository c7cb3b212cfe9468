"""Backoff and deadline decisions of the FUSE client (csi/callfs_csi/fuse/retry.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callfs import errors as e
from callfs.client import CallFSUnavailable
from callfs_csi.fuse.retry import BACKOFF_MAX, backoff, is_transient, next_delay


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n) for n in range(1, 7)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError):
        backoff(0)


def test_no_retry_past_the_deadline() -> None:
    assert next_delay(1, now=10.0, deadline=10.0) is None
    assert next_delay(1, now=11.0, deadline=10.0) is None


def test_last_wait_ends_at_the_deadline() -> None:
    assert next_delay(5, now=9.5, deadline=10.0) == pytest.approx(0.5)


@given(st.integers(1, 50), st.floats(0, 100), st.floats(0, 100))
def test_delay_never_overshoots_the_deadline(attempt: int, now: float, deadline: float) -> None:
    delay = next_delay(attempt, now, deadline)
    if delay is not None:
        assert 0 < delay <= min(BACKOFF_MAX, deadline - now)


@pytest.mark.parametrize("exc", [CallFSUnavailable("x"), TimeoutError(), e.ServiceUnavailable("x"),
                                 e.LockTimeout("x"), e.BadGateway("x")])
def test_outages_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [e.NotFound("x"), e.QuotaExceeded("x"), e.PermissionDenied("x"),
                                 e.BadRequest("x"), ValueError()])
def test_answers_are_final(exc: BaseException) -> None:
    assert not is_transient(exc)

"""When an open batch stops being waited for (``schedule.batch_timeout_seconds``)."""

from __future__ import annotations

import datetime as dt

import pytest

from loopwise.batch import batch_deadline

SINCE = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("timeout", "hours_later", "forced", "expected"),
    [
        (3600.0, 0.5, False, None),  # before its deadline: wait
        (3600.0, 1.0, False, 3600.0),  # at its deadline: close
        (3600.0, 30.0, False, 108_000.0),
        (None, 1000.0, False, None),  # no deadline: wait for every item
        (None, 0.25, True, 900.0),  # a manual close needs no deadline
        (3600.0, -1.0, True, 0.0),  # a clock behind the dispatch waits no negative time
    ],
)
def test_batch_deadline(timeout, hours_later, forced, expected) -> None:
    now = SINCE + dt.timedelta(hours=hours_later)
    assert batch_deadline(SINCE.isoformat(), timeout, forced=forced, now=now) == expected

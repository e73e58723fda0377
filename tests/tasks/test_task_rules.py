"""The one rule for task retries: only what retrying can fix is retried."""

from __future__ import annotations

import pytest

from tasks import io_task, step_task, transient


class HTTPStatus(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (TimeoutError("read timed out"), True),
        (HTTPStatus(503), True),
        (HTTPStatus(429), True),
        (HTTPStatus(404), False),
        (HTTPStatus(400), False),
        (ValueError("bad label"), False),
        (FileNotFoundError("no such object"), False),
        (None, False),
    ],
)
def test_transient_errors_are_network_failures_and_server_side_statuses(err, expected):
    assert transient(err) is expected


def test_a_wrapped_network_failure_is_transient_and_a_wrapped_bug_is_not():
    try:
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as inner:
            raise RuntimeError("API request failed") from inner
    except RuntimeError as outer:
        assert transient(outer)
    assert not transient(RuntimeError("API request failed"))


def test_io_tasks_retry_transient_errors_only_and_step_tasks_never():
    from prefect.states import Failed

    @io_task
    def net():
        """talks to a server"""

    @step_task
    def step():
        """computes"""

    assert (net.retries, step.retries) == (2, 0)
    assert net.cache_policy == step.cache_policy, "one cache rule for every task"
    decide = net.retry_condition_fn
    assert decide(net, None, Failed(data=ConnectionRefusedError(111, "refused")))
    assert not decide(net, None, Failed(data=ValueError("the same input fails the same way")))

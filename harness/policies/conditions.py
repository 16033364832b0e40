"""Retry conditions a user can copy into production code, and the rules they judge by.

- ``retry_on_transient`` retries 5xx, 429, timeouts and connection errors,
  never other 4xx or malformed bodies; it judges by the exception, so it suits
  tasks that call ``response.raise_for_status()``.
- ``honouring_retry_after(condition)`` first waits what a 429/503 asks
  (``Retry-After`` or ``x-ratelimit-reset``): Prefect has no per-attempt
  delay, so a retry condition that waits is the mechanism.
"""

from __future__ import annotations

import errno
import functools
import sqlite3
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

MAX_HONOURED_WAIT = 3600.0


def is_transient_status(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def is_rate_limited(status: int, headers: dict[str, str]) -> bool:
    """A 429, or a 403 that says it is a rate limit (GitHub's primary and secondary limits)."""
    if status == 429:
        return True
    return status == 403 and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)


def can_succeed_on_retry(call: Any) -> bool:
    """Whether the same request could get a better answer later: not after a 404, a 400, a 301..."""
    if call.status is None:
        return True  # a transport fault: the network may heal
    if call.served.startswith("malformed"):
        return True  # a broken body is the server's passing trouble
    headers = {k.lower(): v for k, v in call.headers}
    if is_rate_limited(call.status, headers):
        return True
    return not (300 <= call.status < 500) or call.status == 408


# SQLite's primary result codes worth a retry: another attempt may find the lock gone or the I/O healed
# (SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR); full, corrupt, read-only and the rest stay as they are.
TRANSIENT_SQLITE_CODES = frozenset({5, 6, 10})
# ``errno``s of a file failure worth a retry (the call was interrupted, or asked to try again).
TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EINTR, errno.EBUSY})
PERMANENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.ENOENT, errno.EROFS})


def transient_error(exc: BaseException) -> bool | None:
    """Whether a failure beyond HTTP is worth a retry, judged by the exception: a ``sqlite3.Error`` by its
    result code, an ``OSError`` by its ``errno``; None for anything else (it says nothing either way)."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in TRANSIENT_SQLITE_CODES
    if isinstance(exc, OSError) and not isinstance(exc, httpx.HTTPError) and exc.errno is not None:
        if exc.errno in TRANSIENT_ERRNOS:
            return True
        if exc.errno in PERMANENT_ERRNOS:
            return False
    return None


def raised(state: Any) -> BaseException | None:
    """The exception a failed state holds, or None. Read synchronously: inside an async task, Prefect's
    ``state.result()`` returns a coroutine, which a retry condition (a plain function) cannot await."""
    try:
        value = state.result(raise_on_failure=False, _sync=True)
    except Exception as exc:  # noqa: BLE001 (the result itself could not be read: that is what it holds)
        return exc
    return value if isinstance(value, BaseException) else None


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Production retry condition: retry timeouts, connection errors, 5xx and 429, a busy or locked database
    and a disk I/O error; nothing else.

    Copy it into a flow whose tasks call ``response.raise_for_status()``::

        @task(retries=3, retry_condition_fn=retry_on_transient)
    """
    exc = raised(state)
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        headers = {k.lower(): v for k, v in response.headers.items()}
        return is_transient_status(response.status_code) or is_rate_limited(response.status_code, headers)
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
        return True
    return exc is not None and bool(transient_error(exc))


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds a rate-limited answer asks the client to wait: ``Retry-After`` or ``x-ratelimit-reset``.

    Both are measured from the answer's ``Date`` header when it has one (the
    server's own clock, immune to the client's clock skew), else from now.
    """
    return retry_after_headers(tuple(response.headers.items()), time.time())


def honouring_retry_after(condition: Callable[..., bool]) -> Callable[..., bool]:
    """Production wrapper: when ``condition`` allows a retry, first wait what a 429/503 asks.

    Prefect has no per-attempt delay; waiting inside the retry condition is the mechanism::

        @task(retries=3, retry_condition_fn=honouring_retry_after(my_condition))
    """

    @functools.wraps(condition)
    def wrapped(task: Any, task_run: Any, state: Any) -> bool:
        if not condition(task, task_run, state):
            return False
        wait = _wait_asked(state)
        if wait:
            time.sleep(min(wait, MAX_HONOURED_WAIT))
        return True

    return wrapped


def _wait_asked(state: Any) -> float | None:
    exc = raised(state)
    return retry_after_seconds(exc.response) if isinstance(exc, httpx.HTTPStatusError) else None


def wait_for_retry_after(task: Any, task_run: Any, state: Any) -> bool:
    """Production retry condition: retry everything, first waiting what a 429/503 asks.

    For tasks whose every failure is worth retrying::

        @task(retries=3, retry_condition_fn=wait_for_retry_after)
    """
    return honouring_retry_after(lambda *_: True)(task, task_run, state)


def retry_on_transient_honouring_retry_after(task: Any, task_run: Any, state: Any) -> bool:
    """Production retry condition: as ``retry_on_transient``, and first waits what a 429/503 asks.

    Prefect has no per-attempt delay; waiting inside the condition is the mechanism::

        @task(retries=3, retry_delay_seconds=1, retry_condition_fn=retry_on_transient_honouring_retry_after)
    """
    return honouring_retry_after(retry_on_transient)(task, task_run, state)


def _epoch_of(value: str | None) -> float | None:
    """An HTTP-date (``Wed, 21 Oct 2015 07:28:00 GMT``) as epoch seconds."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def retry_after_headers(headers: tuple[tuple[str, str], ...], epoch_now: float) -> float | None:
    """Seconds the answer with ``headers`` asks to wait: ``Retry-After``, else ``x-ratelimit-reset``.

    Times are measured from the answer's ``Date`` when it has one (the server's
    clock, which is also what makes a scenario's figures independent of the
    day it runs), else from ``epoch_now``.
    """
    h = {k.lower(): v.strip() for k, v in headers}
    now = _epoch_of(h.get("date")) or epoch_now
    if "retry-after" in h:
        try:
            return max(float(h["retry-after"]), 0.0)
        except ValueError:
            at = _epoch_of(h["retry-after"])  # Retry-After may be an HTTP-date (RFC 9110)
            return None if at is None else max(at - now, 0.0)
    if h.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in h:
        try:
            return max(float(h["x-ratelimit-reset"]) - now, 0.0)
        except ValueError:
            return None
    return None

"""What an API evaluation spent on retries, and one message when an endpoint refuses beyond its retry budget.

The openai client retries a 429, a 5xx answer, a timeout or a dropped connection itself, up to the endpoint's
``max_retries`` per request, waiting what ``retry-after`` says (else backing off), and logs every retry on the
``openai._base_client`` logger. ``counting_retries`` counts those records (and the seconds they waited) while a
variant generates; the line itself is shown only where that logger would have shown it anyway. Overlapping
evaluations in one process share the count: each Dagster step runs in a process of its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

OPENAI_LOGGER = "openai._base_client"
RETRY_RECORD = "Retrying request"
RETRIED_STATUSES = (408, 409, 429)


@dataclass
class RetryMeter:
    retries: int = 0
    wait_s: float = 0.0


class _RetryCounter(logging.Filter):
    def __init__(self, shown_from: int) -> None:
        super().__init__()
        self.shown_from, self.meters = shown_from, []

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(RETRY_RECORD):
            wait = float(record.args[0]) if record.args else 0.0
            with _lock:
                for meter in self.meters:
                    meter.retries += 1
                    meter.wait_s += wait
        return record.levelno >= self.shown_from


_lock = threading.Lock()
_counter: _RetryCounter | None = None
_level_before = logging.NOTSET


@contextlib.contextmanager
def counting_retries() -> Iterator[RetryMeter]:
    """A ``RetryMeter`` that counts the openai client's retries until the block ends."""
    global _counter, _level_before
    logger, meter = logging.getLogger(OPENAI_LOGGER), RetryMeter()
    with _lock:
        if _counter is None:
            _counter, _level_before = _RetryCounter(logger.getEffectiveLevel()), logger.level
            logger.addFilter(_counter)
            logger.setLevel(min(logging.INFO, logger.getEffectiveLevel()))
        _counter.meters.append(meter)
    try:
        yield meter
    finally:
        with _lock:
            _counter.meters.remove(meter)
            if not _counter.meters:
                logger.removeFilter(_counter)
                logger.setLevel(_level_before)
                _counter = None


def exhausted_retry_budget(error: BaseException) -> bool:
    """Whether ``error`` (a backend's, raised from the openai client's) is a refusal the client retries: the
    endpoint was still refusing when the retry budget ran out."""
    cause = error.__cause__ or error.__context__
    status = getattr(cause, "status_code", None)
    if status is not None:
        return status in RETRIED_STATUSES or status >= 500
    return type(cause).__name__ in ("APIConnectionError", "APITimeoutError")

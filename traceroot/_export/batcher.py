"""A span queue drained by one background thread, built to lose nothing silently.

The calling thread only appends to a deque. The worker starts on the first span
(so `import traceroot` and a fork before any span start no thread), exports as
soon as `flush_at` spans wait, and keeps draining in large batches while the
queue is long. The queue is bounded in spans and in the text they carry, so a
backend outage costs bounded memory even with large prompts. Spans dropped
because the queue is full are counted and reported at most once a minute, and
in total at shutdown.

A full queue with a backend that keeps up is not a reason to lose spans: the thread
ending a span then waits for room, at most TRACEROOT_QUEUE_WAIT seconds, while exports
are succeeding. A wait that runs out means the backend is not keeping up: from then until
an export succeeds again, a full queue drops (and counts) without waiting, so a failing
backend slows the program by at most one such wait.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from traceroot._errors import in_words
from traceroot._lifecycle import start_thread

logger = logging.getLogger("traceroot")

_DROP_WARNING_EVERY = 60.0
# The most attribute text the queue holds, whatever TRACEROOT_MAX_QUEUE_SIZE allows: 32,768
# spans with a 32 kB prompt each would otherwise hold 1 GB.
MAX_QUEUE_TEXT = 64 * 1024 * 1024
DEFAULT_QUEUE_WAIT = 2.0
# How often the program's threads look again while they wait for room or for a flush. Not a
# Condition: a Ctrl-C raised inside Condition.wait (Python raises it between any two steps)
# can leave the lock released twice, or held for ever, and the next span would hang
# (CPython's own windows, python/cpython#78667 and #118433).
# The first looks come sooner: an explicit flush of a few spans is done within a fraction of
# a millisecond, and a serverless handler flushes at the end of every invocation.
_POLL = 0.001
_FIRST_POLL = 0.00005


def _pause(poll: float) -> float:
    """Sleep `poll` seconds, holding no lock; the next pause, longer up to `_POLL`."""
    time.sleep(poll)
    return min(2 * poll, _POLL)


class _Bell:
    """Wakes the export thread: `threading.Event` without its Python-level Condition.

    The program's threads ring it, and a Ctrl-C is raised between any two steps of
    Python code: inside `Event.set` it can leave the Event's lock held for good (raised
    just as `Condition.__enter__` took it), and the next span would wait for ever. This
    bell is one lock, used only through single C calls: released is rung, held is quiet.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def ring(self) -> None:
        if self._lock.locked():
            try:
                self._lock.release()
            except RuntimeError:  # rung by another thread meanwhile
                pass

    def wait(self, timeout: float) -> None:
        """Until rung or `timeout` seconds; quiet again after (the export thread only)."""
        self._lock.acquire(timeout=timeout)
        # Acquired (rung) or timed out (still held, quiet): either way quiet now.


def text_size(span: ReadableSpan) -> int:
    """About how many characters of text `span` holds (its attributes and events)."""
    size = _text_in(span.attributes)
    for event in span.events:
        size += _text_in(event.attributes)
    return size


def _text_in(attributes: Mapping[str, Any] | None) -> int:
    size = 0
    for value in (attributes or {}).values():
        kind = type(value)
        if kind is str:
            size += len(value)
        elif kind is tuple and value and type(value[0]) is str:
            size += sum(map(len, value))
    return size


class Batcher:
    """Queue + worker thread + exporter; counts every span accepted, sent and dropped."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        finish: Callable[[ReadableSpan], ReadableSpan] | None,
        flush_at: int,
        max_batch_size: int,
        flush_interval: float,
        max_queue_size: int,
        describe_target: str,
        queue_wait: float = DEFAULT_QUEUE_WAIT,
    ) -> None:
        self._exporter = exporter
        self._finish = finish
        self._flush_at = max(1, flush_at)
        self._batch_size = max(1, max_batch_size)
        self._interval = flush_interval
        self._max_queue = max_queue_size
        self._target = describe_target
        self._queue_wait = queue_wait
        self.accepted = 0
        self.delivered = 0
        self.dropped = 0
        self._reset()

    def _reset(self) -> None:
        # Spans and their text sizes in two queues, changed together under _count_lock: no
        # (span, size) pair per span, one object less per queued span for the collector.
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()
        self._queued_text = 0  # characters (by text_size) queued or being sent
        self._count_lock = threading.Lock()
        self._wake = _Bell()
        self._flight_lock = threading.Lock()  # the queue and what is in flight, read together
        self._in_flight = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._last_drop_warning = -_DROP_WARNING_EVERY
        self._flushing = False
        # Backpressure: whether waiting for room can help.
        self._last_export_ok = True  # nothing has failed yet
        self._failed_exports = 0
        self._gave_up_waiting = False
        self._warned_fault = False

    def after_fork_in_child(self) -> None:
        """The parent exports what was queued; the child starts empty, with its own thread."""
        self.accepted = self.delivered = self.dropped = 0
        self._reset()

    def add(self, span: ReadableSpan) -> None:
        """Queue one ended span (`finish` is applied to it before export).

        On a full queue, waits for room (bounded, see the module docstring) or drops it.
        """
        if self._stopping:
            return
        # text_size and _offer, inline: this runs on the program's thread for every span.
        size = 0
        attributes: Mapping[str, Any] = span.attributes or {}
        for value in attributes.values():
            kind = type(value)
            if kind is str:
                size += len(value)
            elif kind is tuple and value and type(value[0]) is str:
                size += sum(map(len, value))
        for event in span.events:
            size += _text_in(event.attributes)
        with self._count_lock:
            queued = (
                len(self._queue) < self._max_queue and self._queued_text + size <= MAX_QUEUE_TEXT
            )
            if queued:
                self._queue.append(span)
                self._sizes.append(size)
                self._queued_text += size
                self.accepted += 1
        if not queued and not (self._may_wait() and self._wait_for_room(span, size)):
            with self._count_lock:
                self.dropped += 1
            self._warn_dropped()
            return
        if self._thread is None:
            self._start_thread()
        if len(self._queue) >= self._flush_at:
            self._wake.ring()

    def _offer(self, span: ReadableSpan, size: int) -> bool:
        """Queue `span` if there is room; whether it was queued."""
        with self._count_lock:
            if len(self._queue) >= self._max_queue or self._queued_text + size > MAX_QUEUE_TEXT:
                return False
            self._queue.append(span)
            self._sizes.append(size)
            self._queued_text += size
            self.accepted += 1
            return True

    def _may_wait(self) -> bool:
        return (
            self._queue_wait > 0
            and self._last_export_ok
            and not self._gave_up_waiting
            and not self._stopping
            and self._thread is not None
            # The export thread makes room: it must never wait for itself.
            and threading.current_thread() is not self._thread
        )

    def _wait_for_room(self, span: ReadableSpan, size: int) -> bool:
        """Wait (bounded) for the export thread to make room, then queue `span`.

        Polled, holding no lock while it sleeps (see `_POLL`)."""
        deadline = time.monotonic() + self._queue_wait
        self._wake.ring()
        poll = _FIRST_POLL
        while not self._offer(span, size):
            if time.monotonic() >= deadline or self._stopping or self._gave_up_waiting:
                # The backend is not keeping up: drop without waiting until an export succeeds.
                self._gave_up_waiting = True
                return False
            poll = _pause(poll)
        return True

    def _warn_dropped(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_warning >= _DROP_WARNING_EVERY:
            self._last_drop_warning = now
            logger.warning(
                "traceroot: the span queue is full (TRACEROOT_MAX_QUEUE_SIZE=%d spans, or %d MB "
                "of text) because %s is not keeping up; %d span(s) dropped so far.",
                self._max_queue,
                MAX_QUEUE_TEXT // (1024 * 1024),
                self._target,
                self.dropped,
            )

    def _start_thread(self, blocking: bool = True) -> bool:
        """Start the export thread unless it runs; whether it runs (or is being started).

        Starting can fail where the span ended: deep in a recursion that ran out of stack
        (the call's RecursionError is being raised), or out of threads. The thread is
        then started by a later span, or by the flush, instead of never. The flush does not
        wait for the lock: it may run in a signal handler that interrupted this very method.
        """
        if not self._thread_lock.acquire(blocking):
            return self._thread is not None
        try:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="traceroot-export", daemon=True)
                # Visible before it starts: a flush from a signal handler arriving meanwhile
                # waits for it rather than giving up on the queue.
                self._thread = thread
                try:
                    start_thread(thread)  # signals go to the program's main thread
                except (RecursionError, RuntimeError, MemoryError) as exc:
                    self._thread = None
                    logger.debug("traceroot: the export thread did not start: %r", exc)
                    return False
            return True
        finally:
            self._thread_lock.release()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            try:
                self._drain()
            except Exception as exc:  # a fault of ours must not end the export for good
                self._recover(exc)
            if self._stopping and not self._queue:
                return

    def _recover(self, exc: Exception) -> None:
        """After an export round failed unexpectedly: nothing left in flight, one warning."""
        with self._flight_lock:
            self._in_flight = 0
        if not self._warned_fault:
            self._warned_fault = True
            logger.warning(
                "traceroot: exporting spans failed unexpectedly (%s); the export goes on.",
                in_words(exc),
            )

    def _drain(self) -> None:
        while self._queue:
            # Taken and marked in flight at once, so flush() never sees a gap.
            with self._flight_lock:
                batch, text = self._take()
                self._in_flight = len(batch)
            try:
                self._export(batch)
            finally:
                with self._count_lock:  # its text counts against the budget until it is sent
                    self._queued_text -= text
                with self._flight_lock:
                    self._in_flight = 0
            if len(self._queue) < self._flush_at and not self._stopping and not self._flushing:
                break

    def _take(self) -> tuple[list[ReadableSpan], int]:
        """Up to a batch of spans off the queue, and their text size."""
        with self._count_lock:  # the two queues move together
            if len(self._sizes) != len(self._queue):
                self._measure_again()
            count = min(len(self._queue), self._batch_size)
            pop, pop_size = self._queue.popleft, self._sizes.popleft
            batch = [pop() for _ in range(count)]
            text = sum([pop_size() for _ in range(count)])
        return batch, text

    def _measure_again(self) -> None:
        """Size every queued span again (under _count_lock, nothing in flight).

        A KeyboardInterrupt raised on the program's thread between the two appends of
        `add` (Python raises it between any two steps) leaves the queues apart: a program
        that catches it and goes on (an agent's Ctrl-C to cancel a step) goes on with
        them apart, and taking a batch would fail. They are made to match again.
        """
        self._sizes = collections.deque(text_size(span) for span in self._queue)
        self._queued_text = sum(self._sizes)

    def _export(self, batch: list[ReadableSpan]) -> None:
        try:
            if self._finish is not None:  # the work that could wait for this thread
                batch = [self._finish(span) for span in batch]
            result = self._exporter.export(batch)
        except Exception as exc:  # an exporter bug must not kill the worker
            self._last_export_ok = False
            self._failed_exports += 1
            logger.warning("traceroot: exporting %d span(s) failed (%s)", len(batch), in_words(exc))
            return
        if result is SpanExportResult.SUCCESS:
            self.delivered += len(batch)
            self._last_export_ok = True
            self._gave_up_waiting = False
        else:  # some may have gone through (the rest refused, or cut short by a split)
            self._last_export_ok = False
            self._failed_exports += 1
            self.delivered += getattr(self._exporter, "delivered_in_last_export", 0)

    def flush(self, timeout: float) -> bool:
        """Export everything queued now; True if it was all delivered within `timeout` seconds.

        A backend found plainly absent (connection refused, no such host, TLS failing) is
        not waited for: False at once, the export retrying on in the background.
        """
        if self._thread is None and (not self._queue or not self._start_thread(blocking=False)):
            return not self._queue
        deadline = time.monotonic() + max(timeout, 0.0)
        failures = self._failed_exports
        self._flushing = True
        try:
            self._wake.ring()
            self._drain_here_if_not_started(deadline)
            poll = _FIRST_POLL
            while self._busy():
                if time.monotonic() >= deadline or getattr(self._exporter, "unreachable", False):
                    return False
                poll = _pause(poll)
                self._wake.ring()
            return self._failed_exports == failures  # refused (401...) is not delivered
        finally:
            self._flushing = False

    def _busy(self) -> bool:
        with self._flight_lock:
            return bool(self._queue or self._in_flight)

    def _drain_here_if_not_started(self, deadline: float) -> None:
        """Export from this thread when the export thread is made but never starts.

        A signal handler's flush (SIGTERM) can interrupt this very thread as it starts the
        export thread: that start cannot finish until the handler returns, so waiting for
        the thread would only wait out the timeout and lose the queue at the exit.
        """
        thread = self._thread
        if thread is None or thread.ident is not None:
            return
        # Another thread starting it has started it within a few milliseconds.
        until = min(deadline, time.monotonic() + 0.1)
        while thread.ident is None and time.monotonic() < until:
            time.sleep(0.005)
        if thread.ident is None:
            self._drain()

    def shutdown(self, timeout: float) -> bool:
        """Flush within `timeout`, then stop the worker and the exporter's retries."""
        done = self.flush(timeout)
        self._stopping = True  # waiters see it within 50 ms; no lock taken here (see _lifecycle)
        self._wake.ring()
        self._exporter.shutdown()
        return done

    @property
    def undelivered(self) -> int:
        """Spans accepted but not (yet) accepted by the backend, plus those dropped."""
        return self.accepted - self.delivered + self.dropped

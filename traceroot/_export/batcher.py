"""A span queue drained by one background thread, built to lose nothing silently.

The calling thread only appends to a deque. The worker starts on the first span
(so `import traceroot` and a fork before any span start no thread), exports as
soon as `flush_at` spans wait, and keeps draining in large batches while the
queue is long. The queue is bounded in spans and in the text they carry, so a
backend outage costs bounded memory even with large prompts. Spans dropped
because the queue is full are counted and reported at most once a minute, and
in total at shutdown.
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

logger = logging.getLogger("traceroot")

_DROP_WARNING_EVERY = 60.0
# The most attribute text the queue holds, whatever TRACEROOT_MAX_QUEUE_SIZE allows: 32,768
# spans with a 32 kB prompt each would otherwise hold 1 GB.
MAX_QUEUE_TEXT = 64 * 1024 * 1024


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
    ) -> None:
        self._exporter = exporter
        self._finish = finish
        self._flush_at = max(1, flush_at)
        self._batch_size = max(1, max_batch_size)
        self._interval = flush_interval
        self._max_queue = max_queue_size
        self._target = describe_target
        self.accepted = 0
        self.delivered = 0
        self.dropped = 0
        self._reset()

    def _reset(self) -> None:
        self._queue: collections.deque[tuple[ReadableSpan, int]] = collections.deque()
        self._queued_text = 0  # characters (by text_size) queued or being sent
        self._count_lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._in_flight = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._last_drop_warning = -_DROP_WARNING_EVERY
        self._flushing = False

    def after_fork_in_child(self) -> None:
        """The parent exports what was queued; the child starts empty, with its own thread."""
        self.accepted = self.delivered = self.dropped = 0
        self._reset()

    def add(self, span: ReadableSpan) -> None:
        """Queue one ended span (`finish` is applied to it before export); never blocks."""
        if self._stopping:
            return
        size = text_size(span)
        with self._count_lock:
            full = len(self._queue) >= self._max_queue or self._queued_text + size > MAX_QUEUE_TEXT
            if full:
                self.dropped += 1
            else:
                self._queue.append((span, size))
                self._queued_text += size
                self.accepted += 1
        if full:
            self._warn_dropped()
            return
        if self._thread is None:
            self._start_thread()
        if len(self._queue) >= self._flush_at and not self._wake.is_set():
            self._wake.set()  # once: setting it again would take its lock on every span

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

    def _start_thread(self) -> None:
        with self._thread_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="traceroot-export", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._drain()
            if self._stopping and not self._queue:
                return

    def _drain(self) -> None:
        while self._queue:
            with self._idle:  # taken and marked in flight at once, so flush() never sees a gap
                batch, text = self._take()
                self._in_flight = len(batch)
            try:
                self._export(batch)
            finally:
                with self._count_lock:  # its text counts against the budget until it is sent
                    self._queued_text -= text
                with self._idle:
                    self._in_flight = 0
                    self._idle.notify_all()
            if len(self._queue) < self._flush_at and not self._stopping and not self._flushing:
                break
        with self._idle:
            self._idle.notify_all()

    def _take(self) -> tuple[list[ReadableSpan], int]:
        """Up to a batch of spans off the queue, and their text size."""
        batch: list[ReadableSpan] = []
        text = 0
        pop = self._queue.popleft
        try:
            while len(batch) < self._batch_size:
                span, size = pop()
                batch.append(span)
                text += size
        except IndexError:
            pass
        return batch, text

    def _export(self, batch: list[ReadableSpan]) -> None:
        try:
            if self._finish is not None:  # the work that could wait for this thread
                batch = [self._finish(span) for span in batch]
            result = self._exporter.export(batch)
        except Exception as exc:  # an exporter bug must not kill the worker
            logger.warning("traceroot: exporting %d span(s) failed: %r", len(batch), exc)
            return
        if result is SpanExportResult.SUCCESS:
            self.delivered += len(batch)
        else:  # some may have gone through (the rest refused, or cut short by a split)
            self.delivered += getattr(self._exporter, "delivered_in_last_export", 0)

    def flush(self, timeout: float) -> bool:
        """Export everything queued now; True if done within `timeout` seconds."""
        if self._thread is None:
            return not self._queue
        deadline = time.monotonic() + max(timeout, 0.0)
        self._flushing = True
        try:
            self._wake.set()
            with self._idle:
                while self._queue or self._in_flight:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._idle.wait(min(remaining, 0.05))
                    self._wake.set()
            return True
        finally:
            self._flushing = False

    def shutdown(self, timeout: float) -> bool:
        """Flush within `timeout`, then stop the worker and the exporter's retries."""
        done = self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._exporter.shutdown()
        return done

    @property
    def undelivered(self) -> int:
        """Spans accepted but not (yet) accepted by the backend, plus those dropped."""
        return self.accepted - self.delivered + self.dropped

"""The export pipeline: finish each span (redact, bound), show it locally, batch and send it.

Every wait is bounded: flush and shutdown run the export in a worker thread and
give up after their budget, reporting how many spans were not delivered.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

from opentelemetry import context as context_api
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from traceroot.config import Config
from traceroot.console import ConsoleProcessor
from traceroot.exporter import OTLPHTTPExporter
from traceroot.redaction import Redact, SpanFinisher

logger = logging.getLogger("traceroot")


class CountingExporter(SpanExporter):
    """Counts what the backend accepted, so losses can be reported rather than hidden."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.delivered = 0
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter bug must not kill the batch thread
            logger.warning("traceroot: exporting %d spans failed: %r", len(spans), exc)
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.delivered += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class ExportPipeline(SpanProcessor):
    """Our processor on the tracer provider: finisher, console view, batch export."""

    def __init__(self, config: Config, redact: Redact | None) -> None:
        self._config = config
        self._finish = SpanFinisher(redact, config.max_attribute_length)
        self._console = ConsoleProcessor() if config.console_enabled else None
        self._destination = config.destination
        self._lock = threading.Lock()
        self._closed = False
        self._build()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _build(self) -> None:
        self.accepted = 0
        self._exporter: CountingExporter | None = None
        self._batch: BatchSpanProcessor | None = None
        if self._destination.kind == "local":
            return
        assert self._destination.endpoint is not None
        self._exporter = CountingExporter(
            OTLPHTTPExporter(
                self._destination.endpoint, self._destination.headers, self._config.timeout
            )
        )
        self._batch = BatchSpanProcessor(
            self._exporter,
            max_queue_size=self._config.max_queue_size,
            schedule_delay_millis=self._config.flush_interval * 1000,
            max_export_batch_size=min(self._config.flush_at, self._config.max_queue_size),
        )

    def _after_fork_in_child(self) -> None:
        # The parent exports what it had queued; the child gets a fresh exporter
        # (its HTTP connection pool must not share the parent's sockets).
        if not self._closed:
            self._lock = threading.Lock()
            self._build()

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self._closed:
            return
        try:
            finished = self._finish(span)
            if self._console is not None:
                self._console.on_end(finished)
            if self._batch is not None:
                self.accepted += 1
                self._batch.on_end(finished)
        except Exception as exc:  # never let the pipeline break the traced program
            logger.warning("traceroot: could not process a finished span: %r", exc)

    @property
    def undelivered(self) -> int:
        """Spans handed to the exporter that the backend has not accepted (yet)."""
        return self.accepted - (self._exporter.delivered if self._exporter else 0)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        batch = self._batch
        if batch is None or self._closed:
            return True
        return _bounded(lambda: batch.force_flush(timeout_millis), timeout_millis / 1000)

    def shutdown(self, timeout_millis: int | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        budget = self._config.shutdown_timeout if timeout_millis is None else timeout_millis / 1000
        batch = self._batch
        if batch is not None:
            if not _bounded(lambda: batch.shutdown(), budget) and self._exporter is not None:
                self._exporter.shutdown()  # stops retries still sleeping in the batch thread
        lost = self.undelivered
        if lost > 0:
            logger.warning(
                "traceroot: %d span(s) were not delivered to %s within the shutdown timeout "
                "(%.1fs, TRACEROOT_SHUTDOWN_TIMEOUT).",
                lost,
                self._destination.endpoint,
                budget,
            )
        if self._console is not None:
            self._console.shutdown()


def _bounded(work: object, budget: float) -> bool:
    """Run `work` in a daemon thread; True if it finished within `budget` seconds."""
    done = threading.Event()

    def run() -> None:
        try:
            work()  # type: ignore[operator]
        except Exception as exc:
            logger.debug("traceroot: flush failed: %r", exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, name="traceroot-flush", daemon=True)
    thread.start()
    return done.wait(max(budget, 0.0))

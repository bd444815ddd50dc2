"""The export pipeline: finish each span (redact, bound), show it locally, queue and send it.

Every wait is bounded: flush and shutdown give up after their budget and report
how many spans were not delivered. Once the process is exiting, all their waits together
stay within TRACEROOT_SHUTDOWN_TIMEOUT (`_lifecycle.exit_allowance`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan

from traceroot import _lifecycle as lifecycle
from traceroot._config import Config
from traceroot._errors import in_words
from traceroot._export.batcher import Batcher
from traceroot._export.exporters import make_exporter
from traceroot._export.finisher import FinishedSpan, Redact, SpanFinisher
from traceroot._export.local_sink import store_batcher, viewer_hint
from traceroot._light_span import LightSpan

if TYPE_CHECKING:
    from traceroot._export.console import ConsoleView

logger = logging.getLogger("traceroot")


class ExportPipeline:
    """What happens to each finished span: finisher, console view, batched export."""

    def __init__(self, config: Config, redact: Redact | None) -> None:
        self._config = config
        self._finish = SpanFinisher(redact, config.max_attribute_length)
        self._destination = config.destination
        self._console: ConsoleView | None = None
        local = self._destination.kind == "local"
        # Cutting long values waits for the export thread. `redact` runs as the span ends,
        # in its thread and context (it may read them), and the console shows finished spans.
        self._finish_here = redact is not None or config.console_enabled
        # The local store (traceroot ui) gets its own queue and thread.
        store = store_batcher(
            not local,
            finish=None if self._finish_here else self._finish,
            max_queue_size=config.max_queue_size,
        )
        self._store = store[0] if store is not None else None
        if config.console_enabled:
            from traceroot._export.console import (  # only when shown
                LOCAL_NOTICE,
                REFUSED_NOTICE,
                ConsoleView,
            )

            notice = REFUSED_NOTICE if self._destination.refused else LOCAL_NOTICE
            notice += viewer_hint(store[1]) if store is not None else ""
            self._console = ConsoleView(notice=notice if local else None)
        if self._store is not None:
            lifecycle.after_fork_in_child(self._store.after_fork_in_child)
        self._lock = threading.Lock()
        self._closed = False
        # In a forked child: when it was forked (a span started before is the parent's).
        self._forked_at = 0
        lifecycle.exit_allowance.limit = config.shutdown_timeout
        self._batcher: Batcher | None = None
        endpoint = self._destination.endpoint
        self._exporter: Any = None
        if self._destination.kind != "local" and endpoint is not None:
            self._exporter = make_exporter(
                self._destination.kind,
                endpoint,
                self._destination.headers,
                self._destination.settings,
                config.timeout,
            )
        if self._exporter is not None and endpoint is not None:
            self._batcher = Batcher(
                self._exporter,
                finish=None if self._finish_here else self._finish,
                flush_at=config.flush_at,
                max_batch_size=config.max_batch_size,
                flush_interval=config.flush_interval,
                max_queue_size=config.max_queue_size,
                describe_target=self._exporter.endpoint,
                queue_wait=config.queue_wait,
            )
        # One process-wide fork hook holds pipelines weakly: a re-initialized client's old
        # pipeline is not kept alive (nor reset) by it.
        lifecycle.after_fork_in_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._forked_at = time.time_ns()
        if self._batcher is not None:
            self._batcher.after_fork_in_child()

    def on_end(self, span: ReadableSpan, lost: Mapping[str, Any] | None = None) -> None:
        """Process an ended span; `lost`: the backend's keys its attribute limit dropped."""
        if self._closed:
            return
        if (span.start_time or 0) < self._forked_at:
            # A span open when the process forked, ended by the child's copy of its code (a
            # child leaving by sys.exit unwinds the parent's frames): the parent, where it
            # started, sends it when it ends there. Sent from here too, it would arrive twice.
            return
        try:
            if lost:
                span = self._finish.restore(span, lost)  # a compact copy
            finished = self._finish(span) if self._finish_here else span
            if finished is span and type(span) not in (LightSpan, FinishedSpan):  # compact
                finished = self._finish.compact(span)  # not rewritten: still the span as it ended
            if self._console is not None:
                self._console.on_end(finished)
            if self._batcher is not None:
                self._batcher.add(finished)
            if self._store is not None:
                self._store.add(finished)
        except Exception as exc:  # never let the pipeline break the traced program
            logger.warning("traceroot: could not process a finished span (%s)", in_words(exc))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._closed:
            return True
        budget = timeout_millis / 1000
        stored = self._store is None or _within_exit_allowance(self._store.flush, budget)
        sent = self._batcher is None or _within_exit_allowance(self._batcher.flush, budget)
        return sent and stored

    def shutdown(self, timeout_millis: int | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        budget = self._config.shutdown_timeout if timeout_millis is None else timeout_millis / 1000
        if self._store is not None:
            self._store.shutdown(budget)  # local and quick; its exporter warns of its own failures
        if self._batcher is not None:
            # A backend that is plainly absent (or refusing the key) is not waited for.
            self._exporter.hurry()
            done = _within_exit_allowance(self._batcher.shutdown, budget)
            lost = self._batcher.undelivered
            # Spans the backend refused as too large (413) were reported when they were.
            refused = getattr(self._exporter, "refused", 0)
            if lost > 0:
                waited_for = lost - refused - self._batcher.dropped
                details = []
                if self._batcher.dropped:
                    details.append(f"{self._batcher.dropped} dropped on a full queue")
                if refused:
                    details.append(f"{refused} refused as too large (HTTP 413), reported above")
                if self._exporter is not None and self._exporter.last_error:
                    details.append(f"last error: {self._exporter.last_error}")
                elif not done and waited_for > 0:
                    details.append("the backend had not answered in time")
                hopeless = self._exporter.unreachable or self._exporter.final or waited_for <= 0
                logger.warning(
                    "traceroot: %d span(s) were not delivered to %s%s.%s",
                    lost,
                    self._exporter.endpoint,
                    f" ({'; '.join(details)})" if details else "",
                    ""
                    if hopeless
                    else " Exit waits at most TRACEROOT_SHUTDOWN_TIMEOUT="
                    f"{self._config.shutdown_timeout:g}s for the backend.",
                )
        if self._console is not None:
            self._console.shutdown()


def _within_exit_allowance(wait: Callable[[float], bool], budget: float) -> bool:
    """`wait(budget)`, cut to what is left of the exit allowance once the process is exiting."""
    allowance = lifecycle.exit_allowance
    if not allowance.exiting:
        return wait(budget)
    started = time.monotonic()
    done = False
    try:
        done = wait(min(budget, allowance.left()))
        return done
    finally:
        allowance.charge(time.monotonic() - started, delivered=done)

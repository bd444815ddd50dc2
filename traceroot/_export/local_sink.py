"""Finished spans into the local store, from a background thread of their own.

The pipeline queues each span on a `Batcher` whose exporter is a `StoreExporter`:
the calling thread only appends to a queue, the export thread writes to SQLite.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from traceroot._export.batcher import Batcher
from traceroot._export.finisher import encodable
from traceroot._local.settings import LocalSettings, local_settings

if TYPE_CHECKING:
    from traceroot._local.store import Store

# SQLite and the store's modules load only when the store is on (most processes that send
# traces elsewhere never open it): they cost a start-up more than everything else here.

logger = logging.getLogger("traceroot")

# The store is local and fast: small batches often, so `traceroot ui` shows spans live.
_FLUSH_AT = 64
_BATCH_SIZE = 512
_FLUSH_INTERVAL_S = 0.5
_BUSY_RETRIES = 3


def viewer_hint(settings: LocalSettings) -> str:
    """The sentence the console's first notice adds when traces are also stored."""
    return f" They are also kept in {settings.path}: run `traceroot ui` to browse them."


def reason(exc: BaseException) -> str:
    """A storage error in words, without a Python repr."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc) or type(exc).__name__
    # SQLite says "disk I/O error" when a file cannot grow (a full disk, a quota): say so.
    if text in ("disk I/O error", "database or disk is full"):
        return f"{text}: is the disk full?"
    return text


class StoreExporter(SpanExporter):
    """Writes batches to the store; gives up (with one warning) when it cannot write."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._broken = False
        self._warned_busy = False
        self.written = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        import sqlite3

        from traceroot._local.records import from_sdk_span

        if self._broken:
            return SpanExportResult.FAILURE
        rows = [row for row in map(from_sdk_span, spans) if row is not None]
        for attempt in range(_BUSY_RETRIES):
            try:
                try:
                    self.written += self._store.write(rows)
                except UnicodeEncodeError:  # a string SQLite refuses: written again, made valid
                    valid = map(from_sdk_span, map(encodable, spans))
                    rows = [row for row in valid if row is not None]
                    self.written += self._store.write(rows)
                return SpanExportResult.SUCCESS
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    if attempt + 1 < _BUSY_RETRIES:
                        continue
                    if not self._warned_busy:
                        self._warned_busy = True
                        logger.warning(
                            "traceroot: the local trace store %s stayed busy (other processes "
                            "writing); %d span(s) were not kept locally.",
                            self._store.path,
                            len(rows),
                        )
                    return SpanExportResult.FAILURE
                self._give_up(exc)
            except (sqlite3.Error, OSError) as exc:
                self._give_up(exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.FAILURE

    def _give_up(self, exc: BaseException) -> None:
        import sqlite3

        from traceroot._local.store import not_a_store

        self._broken = True
        fix = (
            "Move that file aside or delete it (the next traced program starts a new store), "
            if not_a_store(self._store.path, exc)
            else "Set TRACEROOT_LOCAL_DIR to a writable directory, "
        )
        logger.warning(
            "traceroot: cannot write the local trace store %s (%s); traces are not kept "
            "locally from now on (the program runs on). %sor TRACEROOT_LOCAL=false to turn "
            "the store off.",
            self._store.path,
            reason(exc),
            fix,
        )
        try:
            self._store.close()
        except sqlite3.Error:
            pass

    def shutdown(self) -> None:
        pass  # the connection closes with the process; the worker may still be writing

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def store_batcher(
    sending_elsewhere: bool,
    *,
    finish: Callable[[ReadableSpan], ReadableSpan] | None,
    max_queue_size: int,
    settings: LocalSettings | None = None,
) -> tuple[Batcher, LocalSettings] | None:
    """A batcher writing to the local store, or None when the store is off.

    On by default only when nothing is sent elsewhere; TRACEROOT_LOCAL decides otherwise.
    ``settings`` defaults to this process's environment.
    """
    settings = settings if settings is not None else local_settings()
    enabled = settings.enabled if settings.enabled is not None else not sending_elsewhere
    if not enabled:
        return None
    from traceroot._local.store import Store

    store = Store(settings.path, settings.max_traces, settings.max_bytes)
    batcher = Batcher(
        StoreExporter(store),
        finish=finish,
        flush_at=_FLUSH_AT,
        max_batch_size=_BATCH_SIZE,
        flush_interval=_FLUSH_INTERVAL_S,
        max_queue_size=max_queue_size,
        describe_target=f"the local trace store {settings.path}",
    )
    return batcher, settings

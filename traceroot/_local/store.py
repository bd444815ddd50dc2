"""The local trace store: one SQLite database in WAL mode, shared by every traced process.

Each process writes from its export thread in short `BEGIN IMMEDIATE` transactions;
SQLite's busy timeout makes concurrent writers (forked workers, child processes, the
viewer's OTLP ingest) take turns instead of failing. A span is keyed by (trace, span)
id, so one sent twice (a local copy and an OTLP copy) is kept once. After each write
the store keeps to its caps: oldest traces are pruned first.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from traceroot._local.records import SpanRow, span_view

BUSY_TIMEOUT_S = 10.0
# What reading the store can raise: SQLite's errors, and the OS's (its directory cannot be made).
READ_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
# `traceroot-run --check` keeps one span to prove the store works: not a trace of the user's.
CHECK_SPAN_NAME = "traceroot-run --check"
CHECK_SCOPE = "traceroot-run"
_NOT_A_CHECK = (
    f"NOT (t.name IS '{CHECK_SPAN_NAME}' AND t.span_count = 1 AND EXISTS (SELECT 1 FROM "
    "spans c WHERE c.trace_id = t.trace_id AND c.span_id = t.root_span_id AND "
    f"c.scope IS '{CHECK_SCOPE}'))"
)
# SQLite's words for a file that is not (or no longer) one of our databases.
_NOT_OURS = ("not a database", "malformed", "no such table", "no such column", "encrypted")
SCHEMA_VERSION = 1
# Searchable text kept per span (the whole value is in its attributes).
SEARCH_TEXT = 2000
PREVIEW_TEXT = 300

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    otel_kind TEXT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    service TEXT,
    scope TEXT,
    session_id TEXT,
    user_id TEXT,
    tokens INTEGER,
    input TEXT,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    resource TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    root_span_id TEXT,
    name TEXT,
    kind TEXT,
    service TEXT,
    session_id TEXT,
    user_id TEXT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    span_count INTEGER NOT NULL,
    error_count INTEGER NOT NULL,
    tokens INTEGER,
    input TEXT,
    output TEXT,
    updated_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_start ON traces (start_ns);
CREATE INDEX IF NOT EXISTS traces_session ON traces (session_id, start_ns);
CREATE INDEX IF NOT EXISTS traces_service ON traces (service, start_ns);
CREATE INDEX IF NOT EXISTS traces_user ON traces (user_id, start_ns);
CREATE INDEX IF NOT EXISTS traces_updated ON traces (updated_ns);
"""

_TRACE_COLUMNS = (
    "trace_id, root_span_id, name, kind, service, session_id, user_id, start_ns, end_ns, "
    "span_count, error_count, tokens, input, output, updated_ns"
)


def _cut(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def id_start(text: str) -> str | None:
    """`text` as the start of a trace id (lower-case hex), or None when it cannot be one."""
    text = text.strip().lower()
    if not text or any(c not in "0123456789abcdef" for c in text):
        return None
    return text


def not_a_store(path: Path, exc: BaseException) -> bool:
    """Whether `exc` says the file at `path` is no trace store (a directory, another file)."""
    return path.is_dir() or (
        not isinstance(exc, OSError) and any(words in str(exc) for words in _NOT_OURS)
    )


def store_problem(path: Path, exc: BaseException) -> str:
    """Why the store at `path` cannot be read, in words, with what to do about it."""
    fix = "move it aside or delete it; traced programs then start a new one"
    if path.is_dir():
        return f"{path} is a directory, not a trace store: {fix}"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        return f"cannot open the trace store {path}: {(exc.strerror or str(exc)).lower()}{where}"
    text = str(exc) or type(exc).__name__
    if any(words in text for words in _NOT_OURS):
        return f"{path} is not a readable trace store ({text}): {fix}"
    if "locked" in text or "busy" in text:
        return f"the trace store {path} stayed busy (another process is writing): try again"
    if text in ("disk I/O error", "database or disk is full"):
        return f"cannot read the trace store {path} ({text}): is the disk full?"
    if "unable to open" in text:
        return (
            f"cannot open the trace store {path} ({text}): check that its directory is "
            "writable, or pick another with TRACEROOT_LOCAL_DIR or --dir"
        )
    return f"cannot read the trace store {path} ({text})"


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Store:
    """The database at `path`; a connection per thread that uses it, opened on first use."""

    def __init__(self, path: Path, max_traces: int = 10_000, max_bytes: int = 512 << 20) -> None:
        self.path = path
        self.max_traces = max_traces
        self.max_bytes = max_bytes
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        # Connections inherited over fork are parked here, never used or closed: closing
        # one in the child could checkpoint or unlock the parent's database file.
        self._abandoned: list[sqlite3.Connection] = []

    def exists(self) -> bool:
        return self.path.exists()

    def connection(self) -> sqlite3.Connection:
        """This process's connection, opened (and the schema made) on first use."""
        if self._pid != os.getpid():
            if self._conn is not None:
                self._abandoned.append(self._conn)
            self._conn = None
            self._pid = os.getpid()
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(self.path),
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,  # we open each transaction ourselves
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                conn.execute("PRAGMA journal_mode=WAL")  # persistent: set once, by its creator
                with self._transaction(conn):
                    # One statement at a time: executescript() would commit our transaction.
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable enough, far fewer fsyncs
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    @contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front: a reader upgrading later could fail
        # with "database is locked" without waiting for the busy timeout.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    # -- writing -----------------------------------------------------------------

    def write(self, rows: Iterable[SpanRow]) -> int:
        """Store `rows` (replacing spans seen before), update their traces, prune; a count."""
        rows = list(rows)
        if not rows:
            return 0
        conn = self.connection()
        now = time.time_ns()
        with self._transaction(conn):
            conn.executemany(
                "INSERT OR REPLACE INTO spans VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.trace_id,
                        r.span_id,
                        r.parent_id,
                        r.name,
                        r.kind,
                        r.otel_kind,
                        r.start_ns,
                        r.end_ns,
                        r.status,
                        r.status_message,
                        r.service,
                        r.scope,
                        r.session_id,
                        r.user_id,
                        r.tokens,
                        _cut(r.input, SEARCH_TEXT),
                        _dumps(r.attributes),
                        _dumps(r.events),
                        _dumps(r.resource),
                    )
                    for r in rows
                ],
            )
            for trace_id in dict.fromkeys(r.trace_id for r in rows):
                self._summarize(conn, trace_id, now)
            self._prune(conn)
        return len(rows)

    def _summarize(self, conn: sqlite3.Connection, trace_id: str, now: int) -> None:
        """Recount the trace from its spans: right however many processes wrote them."""
        conn.execute(
            "INSERT INTO traces (trace_id, start_ns, end_ns, span_count, error_count, tokens, "
            "session_id, user_id, updated_ns) "
            "SELECT trace_id, min(start_ns), max(end_ns), count(*), "
            "sum(status = 'ERROR'), sum(CASE WHEN kind = 'llm' THEN tokens END), "
            "max(session_id), max(user_id), ? FROM spans WHERE trace_id = ? GROUP BY trace_id "
            "ON CONFLICT (trace_id) DO UPDATE SET start_ns = excluded.start_ns, "
            "end_ns = excluded.end_ns, span_count = excluded.span_count, "
            "error_count = excluded.error_count, tokens = excluded.tokens, "
            "session_id = excluded.session_id, user_id = excluded.user_id, "
            "updated_ns = excluded.updated_ns",
            (now, trace_id),
        )
        # The root: a span with no parent, else one whose parent is in another process.
        root = conn.execute(
            "SELECT span_id, name, kind, service, input, attributes FROM spans s "
            "WHERE trace_id = ?1 ORDER BY parent_id IS NOT NULL AND EXISTS "
            "(SELECT 1 FROM spans p WHERE p.trace_id = ?1 AND p.span_id = s.parent_id), "
            "parent_id IS NOT NULL, start_ns LIMIT 1",
            (trace_id,),
        ).fetchone()
        if root is None:
            return
        output = span_view({"attributes": json.loads(root[5])})["output"]
        conn.execute(
            "UPDATE traces SET root_span_id = ?, name = ?, kind = ?, service = ?, input = ?, "
            "output = ? WHERE trace_id = ?",
            (
                root[0],
                root[1],
                root[2],
                root[3],
                _cut(root[4], PREVIEW_TEXT),
                _cut(output, PREVIEW_TEXT),
                trace_id,
            ),
        )

    def _prune(self, conn: sqlite3.Connection) -> None:
        """Delete the oldest traces beyond the caps, with some slack so it is not every write."""
        count = conn.execute("SELECT count(*) FROM traces").fetchone()[0]
        excess = count - self.max_traces
        if excess > 0:
            excess += self.max_traces // 20
        else:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if (pages - free) * page_size > self.max_bytes:
                excess = max(1, count // 10)
        if excess <= 0:
            return
        oldest = conn.execute(
            "SELECT trace_id FROM traces ORDER BY start_ns LIMIT ?", (excess,)
        ).fetchall()
        conn.executemany("DELETE FROM spans WHERE trace_id = ?", oldest)
        conn.executemany("DELETE FROM traces WHERE trace_id = ?", oldest)

    # -- reading -----------------------------------------------------------------

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.connection().execute(sql, tuple(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def traces(
        self,
        *,
        service: str | None = None,
        session: str | None = None,
        user: str | None = None,
        errors: bool = False,
        text: str | None = None,
        before: tuple[int, str] | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Traces newest first, filtered; `before` is the (start_ns, trace_id) to page from."""
        where: list[str] = [_NOT_A_CHECK]
        params: list[Any] = []
        if service:
            where.append("service = ?")
            params.append(service)
        if session:
            where.append("session_id = ?")
            params.append(session)
        if user:
            where.append("user_id = ?")
            params.append(user)
        if errors:
            where.append("error_count > 0")
        if text:
            where.append(
                "EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND "
                "(s.name LIKE ?1 ESCAPE '\\' OR s.input LIKE ?1 ESCAPE '\\'))".replace(
                    "?1", f"?{len(params) + 1}"
                )
            )
            params.append(_like(text))
        if before is not None:
            where.append(f"(start_ns, trace_id) < (?{len(params) + 1}, ?{len(params) + 2})")
            params.extend(before)
        sql = f"SELECT {_TRACE_COLUMNS} FROM traces t WHERE " + " AND ".join(where)
        sql += f" ORDER BY start_ns DESC, trace_id DESC LIMIT {max(1, min(int(limit), 500))}"
        return self._read(sql, params)

    def resolve(self, trace_id: str) -> str | None:
        """The full id of the trace whose id is or starts with `trace_id`, if exactly one."""
        found = self.starting(trace_id, 2)
        return found[0] if len(found) == 1 else None

    def starting(self, trace_id: str, limit: int) -> list[str]:
        """Up to `limit` full ids of traces whose id is or starts with `trace_id` (hex)."""
        trace_id = id_start(trace_id) or ""
        if not trace_id:
            return []
        found = self._read(
            "SELECT trace_id FROM traces WHERE trace_id >= ? AND trace_id < ? "
            f"ORDER BY trace_id LIMIT {max(1, int(limit))}",
            (trace_id, trace_id + "g"),
        )
        return [row["trace_id"] for row in found]

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace's summary and its spans (attributes and events decoded), by start."""
        found = self._read(f"SELECT {_TRACE_COLUMNS} FROM traces WHERE trace_id = ?", (trace_id,))
        if not found:
            return None
        spans = self._read(
            "SELECT trace_id, span_id, parent_id, name, kind, otel_kind, start_ns, end_ns, "
            "status, status_message, service, scope, attributes, events, resource "
            "FROM spans WHERE trace_id = ? ORDER BY start_ns, span_id",
            (trace_id,),
        )
        for span in spans:
            for key in ("attributes", "events", "resource"):
                span[key] = json.loads(span[key])
        return {**found[0], "spans": spans}

    def root_span(self, trace: dict[str, Any]) -> dict[str, Any] | None:
        """The decoded root span of a trace summary."""
        rows = self._read(
            "SELECT attributes, events, status, status_message FROM spans "
            "WHERE trace_id = ? AND span_id = ?",
            (trace["trace_id"], trace["root_span_id"]),
        )
        if not rows:
            return None
        row = rows[0]
        row["attributes"] = json.loads(row["attributes"])
        row["events"] = json.loads(row["events"])
        return row

    def session(self, session_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """The traces of one session, oldest first (a conversation in order)."""
        return self._read(
            f"SELECT {_TRACE_COLUMNS} FROM traces WHERE session_id = ? "
            f"ORDER BY start_ns LIMIT {max(1, min(int(limit), 2000))}",
            (session_id,),
        )

    def facets(self) -> dict[str, list[str]]:
        """The services, and recent sessions and users, for the filters."""

        def column(sql: str) -> list[str]:
            return [r[0] for r in self.connection().execute(sql).fetchall() if r[0]]

        return {
            "services": column(
                f"SELECT DISTINCT service FROM traces t WHERE {_NOT_A_CHECK} ORDER BY service"
            ),
            "sessions": column(
                "SELECT session_id FROM traces WHERE session_id IS NOT NULL "
                "GROUP BY session_id ORDER BY max(start_ns) DESC LIMIT 100"
            ),
            "users": column(
                "SELECT user_id FROM traces WHERE user_id IS NOT NULL "
                "GROUP BY user_id ORDER BY max(start_ns) DESC LIMIT 100"
            ),
        }

    def last_change(self) -> int:
        """When a trace was last written: the page polls this to show new traces live."""
        row = self.connection().execute("SELECT max(updated_ns), count(*) FROM traces").fetchone()
        return int(row[0] or 0) + int(row[1])

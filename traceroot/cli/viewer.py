"""`traceroot`: browse the local trace store (`ui`), list traces (`traces`), print one (`show`)."""

from __future__ import annotations

import errno
import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from traceroot._local.records import content_json, span_view
from traceroot._local.server import ViewerServer, is_loopback
from traceroot._local.settings import DB_NAME, local_settings
from traceroot._local.store import READ_ERRORS, Store, id_start, store_problem

DEFAULT_PORT = 4318  # OTLP/HTTP's own port: SDKs with default settings send straight here
# Control characters (ANSI escapes among them) in captured text must not drive the terminal,
# nor bidirectional controls reorder what follows them (U+202E turns text around).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _safe(text: str) -> str:
    return _CONTROL.sub(lambda m: _escape(m.group()), text)


def _store(directory: Path | None) -> Store:
    settings = local_settings()
    path = directory / DB_NAME if directory is not None else settings.path
    return Store(path, settings.max_traces, settings.max_bytes)


def _existing_store(ctx: click.Context) -> Store:
    store = _store(ctx.obj)
    if not store.exists():
        click.echo(
            f"No traces yet: {store.path} does not exist. Run a program with "
            "`traceroot-run python app.py` (no API key), or send OTLP to `traceroot ui`.",
            err=True,
        )
        ctx.exit(0)
    return store


@contextmanager
def _reading(store: Store) -> Iterator[None]:
    """A store that cannot be read (not a database, a directory...) as one line, not a traceback."""
    try:
        yield
    except READ_ERRORS as exc:
        raise click.ClickException(store_problem(store.path, exc)) from None


def _duration(start_ns: int, end_ns: int) -> str:
    seconds = max(0, end_ns - start_ns) / 1e9
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


def _one_line(text: str | None, limit: int) -> str:
    if not text:
        return ""
    line = " ".join(_safe(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The store's directory (default: TRACEROOT_LOCAL_DIR, else the per-user data dir).",
)
@click.pass_context
def main(ctx: click.Context, directory: Path | None) -> None:
    """Look at the traces kept in the local store (no account needed)."""
    ctx.obj = directory


@main.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to serve on; 0 picks a free one.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Anything but loopback exposes every captured prompt.",
)
@click.pass_context
def ui(ctx: click.Context, port: int, host: str) -> None:
    """Serve the trace viewer, and an OTLP/HTTP receiver at /v1/traces, on this machine."""
    settings = local_settings()
    store = _store(ctx.obj)
    if not is_loopback(host):
        click.echo(
            f"traceroot: warning: serving on {host}, not loopback: anyone who can reach this "
            f"machine on port {port} can read every captured prompt and output, and send spans. "
            "Use --host 127.0.0.1 to keep it to this machine.",
            err=True,
        )
    try:
        server = ViewerServer(
            store.path, host, port, max_traces=settings.max_traces, max_bytes=settings.max_bytes
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} on {host} is already in use (another `traceroot ui`, or an "
                "OpenTelemetry Collector?). Pass --port N, or --port 0 for any free port."
            ) from None
        where = store.path if exc.filename else f"{host}:{port}"
        raise click.ClickException(f"cannot serve from {where}: {exc.strerror or exc}") from None
    except Exception as exc:  # sqlite3.Error: an unreadable or foreign database
        raise click.ClickException(f"cannot open the trace store {store.path}: {exc}") from None
    url = server.url
    click.echo(f"traceroot ui: {url}")
    click.echo(f"  store: {store.path}")
    click.echo(f"  OTLP/HTTP: OTEL_EXPORTER_OTLP_ENDPOINT={url} (protobuf, gzip or not)")
    click.echo("  Ctrl-C stops it.")
    sys.stdout.flush()
    server.probe()  # a store it cannot read is said now (once), and the page shows it too
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@main.command()
@click.option("--session", default=None, help="Only this session's traces (oldest first).")
@click.option("--service", default=None, help="Only this service's traces.")
@click.option("--errors", is_flag=True, help="Only traces with an error.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.pass_context
def traces(
    ctx: click.Context, session: str | None, service: str | None, errors: bool, limit: int
) -> None:
    """List recent traces, newest first."""
    store = _existing_store(ctx)
    with _reading(store):
        if session:
            rows = store.session(session)[-limit:]
        else:
            rows = store.traces(service=service, errors=errors, limit=limit)
    if not rows and not (session or service or errors):
        click.echo(
            f"No traces yet in {store.path}. Run a program with "
            "`traceroot-run python app.py` (no API key), or send OTLP to `traceroot ui`.",
            err=True,
        )
        return
    if not rows:
        click.echo("No traces match.", err=True)
        return
    header = (
        f"{'STARTED':<19}  {'TRACE ID':<32}  {'SPANS':>5}  {'DURATION':>9}  {'STATUS':<7}  NAME"
    )
    click.echo(header)
    for row in rows:
        status = f"{row['error_count']} err" if row["error_count"] else "ok"
        extra = [f"service={row['service']}"] if row["service"] else []
        if row["session_id"]:
            extra.append(f"session={row['session_id']}")
        name = _one_line(row["name"], 40)
        click.echo(
            f"{_when(row['start_ns']):<19}  {row['trace_id']:<32}  {row['span_count']:>5}  "
            f"{_duration(row['start_ns'], row['end_ns']):>9}  {status:<7}  {name}  "
            + _one_line(" ".join(extra), 80)
        )


def _block(label: str, text: str, prefix: str) -> list[str]:
    lines = _safe(text).splitlines() or [""]
    if len(lines) == 1:
        return [f"{prefix}{label}: {lines[0]}"]
    return [f"{prefix}{label}:"] + [f"{prefix}  {line}" for line in lines]


def _span_lines(span: dict[str, Any], prefix: str) -> list[str]:
    view = span_view(span)
    out = []
    for message in view["messages"]["input"] + view["messages"]["output"]:
        out += _block(message["role"] or "message", message["content"], prefix)
        for call in message["tool_calls"]:
            out.append(
                f"{prefix}  -> {_safe(call['name'] or 'tool')}({_safe(call['arguments'] or '')})"
            )
    if view["input"] is not None:
        out += _block("input", _pretty(view["input"]), prefix)
    if view["output"] is not None:
        out += _block("output", _pretty(view["output"]), prefix)
    error = view["error"]
    if error:
        out += _block("error", ": ".join(filter(None, [error["type"], error["message"]])), prefix)
        if error["traceback"]:
            out += [f"{prefix}  {_safe(line)}" for line in error["traceback"].rstrip().splitlines()]
    return out


def _pretty(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    compact = json.dumps(value, ensure_ascii=False)
    return compact if len(compact) <= 100 else content_json(value)


@main.command()
@click.argument("trace_id")
@click.pass_context
def show(ctx: click.Context, trace_id: str) -> None:
    """Print one trace (its id, or the start of it) as a tree, with inputs and outputs."""
    store = _existing_store(ctx)
    with _reading(store):
        candidates = store.starting(trace_id, 4)
        found = store.trace(candidates[0]) if len(candidates) == 1 else None
    if found is None:
        if id_start(trace_id) is None:
            raise click.ClickException(f"{trace_id!r} is not a trace id (32 hex digits)")
        if len(candidates) > 1:
            shown = ", ".join(candidates[:3]) + (", ..." if len(candidates) > 3 else "")
            raise click.ClickException(
                f"more than one trace has an id starting {trace_id!r} ({shown}): give more "
                "of the id"
            )
        raise click.ClickException(f"no trace in {store.path} has an id starting {trace_id!r}")
    spans = found["spans"]
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children.setdefault(parent, []).append(span)
    facts = [f"{found['span_count']} spans", _duration(found["start_ns"], found["end_ns"])]
    facts += [
        f"{k}={found[c]}"
        for k, c in (("service", "service"), ("session", "session_id"), ("user", "user_id"))
        if found.get(c)
    ]
    click.echo(f"trace {found['trace_id']}  {_when(found['start_ns'])}  " + _safe("  ".join(facts)))
    lines: list[str] = []

    def walk(parent: str | None, prefix: str) -> None:
        kids = children.get(parent, [])
        for index, span in enumerate(kids):
            last = index == len(kids) - 1
            view = span_view(span)
            head = f"{_one_line(span['name'], 80)} [{view['kind']}] "
            head += _duration(span["start_ns"], span["end_ns"])
            if view["model"]:
                head += f"  model={_one_line(view['model'], 40)}"
            if view["tokens"]:
                tokens = view["tokens"]
                head += f"  tokens={tokens.get('prompt', '?')}->{tokens.get('completion', '?')}"
            if span["status"] == "ERROR":
                head += "  ERROR"
            lines.append(prefix + ("`- " if last else "|- ") + head)
            child_prefix = prefix + ("   " if last else "|  ")
            lines.extend(
                _span_lines(
                    span, child_prefix + ("   " if not children.get(span["span_id"]) else "|  ")
                )
            )
            walk(span["span_id"], child_prefix)

    walk(None, "")
    click.echo("\n".join(lines))

"""The process-wide client, made on first need.

Under ``traceroot-run`` the start-up hook calls ``auto_initialize(deferred=True)``: it
reads the configuration and installs import hooks, nothing more. The client itself (the
OpenTelemetry SDK, our export pipeline, the instrumentors) starts when the process makes
its first span, imports an instrumented library or the OpenTelemetry API, or calls
``initialize()``; a process that never traces never loads them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from traceroot import _import_hooks as import_hooks
from traceroot import _integrations as integrations
from traceroot import _lifecycle as lifecycle
from traceroot import _propagation as propagation
from traceroot._config import Config, load_config
from traceroot._integrations.activation import DeferredProvider, provider_ready

if TYPE_CHECKING:
    from traceroot._export import Redact
    from traceroot._sdk_client import Mode, TraceRootClient
    from traceroot._sdk_client import TracerootClient as TracerootClient

logger = logging.getLogger("traceroot")

# Importing it means the program is about to ask for a tracer: ours must be the global
# provider by then (a tracer taken from OpenTelemetry's proxy provider follows it).
_OTEL_API = "opentelemetry.trace"


def __getattr__(name: str) -> Any:
    # The client class loads the SDK: only code that names it pays for that.
    if name in ("TraceRootClient", "TracerootClient"):
        from traceroot import _sdk_client

        value = getattr(_sdk_client, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _new_client(config: Config, redact: Redact | None, mode: Mode) -> TraceRootClient:
    from traceroot._sdk_client import TraceRootClient

    return TraceRootClient(config, redact, mode=mode)


_lock = threading.RLock()
_client: TraceRootClient | None = None
# What auto_initialize(deferred=True) read, until the client starts from it.
_deferred: Config | None = None
_starting = False  # the client is being made (its own imports must not start another)
_shut_down = False
_exit_hooked = False


_debug_handler: logging.Handler | None = None


def _debug_log(config: Config) -> None:
    """`TRACEROOT_DEBUG=true`: our own debug log on stderr, once per process."""
    global _debug_handler
    if not config.debug or _debug_handler is not None:
        return
    _debug_handler = logging.StreamHandler()  # stderr, where our warnings go too
    _debug_handler.setLevel(logging.DEBUG)
    _debug_handler.addFilter(_not_shown_elsewhere)
    _debug_handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_debug_handler)
    logger.setLevel(logging.DEBUG)
    logger.debug("traceroot: debug log on (TRACEROOT_DEBUG); %r", config)


def _not_shown_elsewhere(record: logging.LogRecord) -> bool:
    # A program that set up its own logging shows our records there (the level is DEBUG
    # now); shown here too, they would print twice.
    return not logging.getLogger().handlers


def _install_exit_hooks() -> None:
    global _exit_hooked
    if not _exit_hooked:
        _exit_hooked = True
        lifecycle.on_exit(_shutdown_at_exit)


def initialize(
    api_key: str | None = None,
    host_url: str | None = None,
    flush_interval: float | None = None,
    batch_size: int | None = None,
    timeout: float | None = None,
    enabled: bool | None = None,
    integrations: Sequence[integrations.Integration | str] | None = None,
    git_repo: str | None = None,
    git_ref: str | None = None,
    redact: Redact | None = None,
    environment: str | None = None,
) -> TraceRootClient:
    """Set up tracing for this process; arguments win over `TRACEROOT_*` variables.

    A second call warns and returns the existing client, except after an automatic
    initialization (by `traceroot-run` or a first `@observe` call), which it takes over.
    """
    global _client, _shut_down
    with _lock:
        _start_deferred()  # an explicit initialize() takes over from the automatic one
        if _client is not None and _client.mode == "explicit" and not _shut_down:
            logger.warning(
                "traceroot: initialize() was called more than once; keeping the first "
                "configuration. Call traceroot.shutdown() first to re-initialize."
            )
            if redact is not None and _client.redact is None:
                _client.reconfigure(_client.config, redact, "explicit")
            return _client
        config = load_config(
            api_key=api_key,
            host_url=host_url,
            flush_interval=flush_interval,
            batch_size=batch_size,
            timeout=timeout,
            enabled=enabled,
            environment=environment,
            git_repo=git_repo,
            git_ref=git_ref,
        )
        _debug_log(config)
        if _client is not None:
            _client.reconfigure(config, redact, "explicit")
        else:
            _client = _new_client(config, redact, "explicit")
        _shut_down = False
        _install_exit_hooks()
        if integrations is not None:
            _client.activate_integrations(list(integrations), explicit=True)
        return _client


def auto_initialize(*, deferred: bool = False) -> TraceRootClient | None:
    """Initialize as `traceroot-run` does: from the environment, integrations auto-detected,
    SIGTERM flushed. Idempotent; a later explicit `initialize()` takes over. Never raises.

    ``deferred=True`` (the start-up hook): read the configuration and install the import
    hooks only; the client starts at the first span, at the import of an instrumented
    library or of the OpenTelemetry API, or at `initialize()`. Returns None until then.
    """
    global _client, _deferred
    try:
        with _lock:
            if _client is None and _deferred is None:
                config = load_config()
                _debug_log(config)
                if not config.enabled:
                    _client = _new_client(config, None, "auto")
                    _install_exit_hooks()
                    return _client
                # Before any thread exists: it may make the parent's context the process default.
                propagation.install()
                _deferred = config
                _install_exit_hooks()
                later = DeferredProvider(_started_provider)
                integrations.activate(config.integrations, later, explicit=False)
                if config.otel_instrumentors:
                    integrations.activate_otel_instrumentors(later)
                lifecycle.SigtermFlush(_flush_quietly).install()
                import_hooks.when_imported(_OTEL_API, _start_on_api_import)
            if not deferred:
                _start_deferred()
            return _client
    except Exception as exc:
        logger.warning("traceroot: could not start tracing (%r); the program runs untraced.", exc)
        return None


def _start_deferred() -> TraceRootClient | None:
    """Start the client `auto_initialize(deferred=True)` prepared, if it has not started."""
    global _client, _deferred, _starting
    with _lock:
        config = _deferred
        if config is None or _client is not None or _starting:
            return _client
        _starting = True
        try:
            try:
                client = _new_client(config, None, "auto")
            except Exception as exc:  # never break the host program
                logger.warning(
                    "traceroot: could not start tracing (%s: %s); the program runs untraced.",
                    type(exc).__name__,
                    exc,
                )
                client = _new_client(replace(config, enabled=False), None, "auto")
            _client = client
            _deferred = None
        finally:
            _starting = False
    provider = client.tracer_provider
    if provider is not None:
        provider_ready(provider)
    return client


def _started_provider() -> Any:
    """Our provider, starting the client for it (an instrumented library was imported).

    None while another thread is starting the client: this thread is inside an import
    (the hook runs there), and the starting thread may be waiting for that very module;
    waiting for it here would deadlock. The integration is instrumented once it has started.
    """
    while True:
        client = _client
        if client is not None:
            return client.tracer_provider
        if _lock.acquire(timeout=0.05):
            try:
                return get_client().tracer_provider
            finally:
                _lock.release()
        if _starting:
            return None


def _start_on_api_import() -> None:
    # Without blocking: the thread starting the client may be waiting for this very import.
    if _starting or not _lock.acquire(blocking=False):
        return
    try:
        _start_deferred()
    finally:
        _lock.release()


def current_client() -> TraceRootClient | None:
    """The process's client if one exists yet (never creates one; None while it is deferred)."""
    return _client


def get_client() -> TraceRootClient:
    """The process's client, initialized from the environment on first use."""
    global _client
    client = _client
    if client is not None:
        return client
    with _lock:
        if _client is None and _deferred is not None:
            started = _start_deferred()
            if started is not None:
                return started
        if _client is None:
            config = load_config()
            _debug_log(config)
            _client = _new_client(config, None, "lazy")
            _install_exit_hooks()
            if _client.enabled and _client.config.integrations:
                _client.activate_integrations(_client.config.integrations, explicit=False)
        return _client


def flush(timeout: float | None = None) -> bool:
    """Send every finished span now; bounded by `timeout` (default the shutdown timeout)."""
    client = _client
    return client.flush(timeout) if client is not None else True


def shutdown() -> None:
    """Flush (bounded by `TRACEROOT_SHUTDOWN_TIMEOUT`) and stop tracing."""
    global _shut_down
    with _lock:
        _start_deferred()  # a client that never started still ends closed, as one that did
        client = _client
        _shut_down = True
    if client is not None:
        client.shutdown()
        integrations.deactivate()


def _shutdown_at_exit() -> None:
    # At exit only the flush matters; uninstrumenting libraries there is wasted work.
    client = _client
    if client is not None:
        client.shutdown()


def _flush_quietly() -> None:
    flush()

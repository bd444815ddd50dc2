"""The process-wide client, made on first need.

Under ``traceroot-run`` the start-up hook calls ``auto_initialize(deferred=True)``: it
takes a copy of the environment, installs the SIGTERM handler, the fork and exit hooks and
one import hook watching a fixed set of modules, nothing more. The configuration is read
and the integrations are activated at the first import of one of those modules (an
instrumented library, the OpenTelemetry API); the client itself (the OpenTelemetry SDK, our
export pipeline, the instrumentors) starts at the first span, such an import, or
``initialize()``. A process that never traces loads none of it.

This module is imported by that hook: at import it loads nothing Python has not loaded by
then (no `threading`, `logging`, `typing`, `dataclasses`).
"""

from __future__ import annotations

import _thread
import os
import sys

from traceroot import _compat as compat
from traceroot import _import_hooks as import_hooks
from traceroot import _lifecycle as lifecycle
from traceroot import _propagation as propagation
from traceroot import _settings as settings
from traceroot._errors import in_words

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping, Sequence
    from typing import Any

    from traceroot._config import Config
    from traceroot._export import Redact
    from traceroot._integrations import Integration
    from traceroot._sdk_client import Mode, TraceRootClient
    from traceroot._sdk_client import TracerootClient as TracerootClient


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("traceroot")


# Importing it means the program is about to ask for a tracer: ours must be the global
# provider by then (a tracer taken from OpenTelemetry's proxy provider follows it).
_OTEL_API = "opentelemetry.trace"
# Importing it (`--check`, `traceroot.Integration`) asks what is activated: activate first.
_ACTIVATION = "traceroot._integrations.activation"
# The client's own module imports the OpenTelemetry API as it loads (`traceroot.TraceRootClient`
# named before the first span): the client starts once that module is complete.
_SDK_CLIENT = "traceroot._sdk_client"


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


class _Prepared:
    """What auto_initialize(deferred=True) took at start-up, until the client starts from it:
    the environment and the program's name as they were then, and their configuration once
    read (with its warnings shown once: not again where the launcher showed them)."""

    def __init__(self, environ: dict[str, str], argv0: str | None) -> None:
        self.environ = environ
        self.argv0 = argv0
        self.config: Config | None = None
        self.watched: list[str] = []

    def load(self) -> Config:
        config = self.config
        if config is None:
            from traceroot._config import load_config

            digest = settings.configuration_digest(self.environ)
            checked = self.environ.get(settings.CHECKED_VARIABLE) == digest
            config = load_config(environ=self.environ, argv0=self.argv0, quiet=checked)
            if not checked and _alone():
                # Shown here: the processes this one starts need not show them again.
                os.environ[settings.CHECKED_VARIABLE] = digest
            self.config = config
            _debug_log(config)
        return config


def _alone() -> bool:
    """Whether this is the only Python thread: changing `os.environ` (C's setenv) while
    another thread may read the environment is unsafe."""
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1


_lock = compat.rlock()
_client: TraceRootClient | None = None
_deferred: _Prepared | None = None
_starting = False  # the client is being made (its own imports must not start another)
_shut_down = False
_exit_hooked = False
# Integrations are activated once, from the deferred start-up.
_activation_lock = _thread.allocate_lock()
_activated = False
_activating: int | None = None  # the thread activating them


_debug_handler: logging.Handler | None = None


def _debug_log(config: Config) -> None:
    """`TRACEROOT_DEBUG=true`: our own debug log on stderr, once per process."""
    global _debug_handler
    if not config.debug or _debug_handler is not None:
        return
    import logging

    logger = _logger()
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
    import logging

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
    integrations: Sequence[Integration | str] | None = None,
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
    from traceroot._config import load_config

    with _lock:
        _start_deferred()  # an explicit initialize() takes over from the automatic one
        if _client is not None and _client.mode == "explicit" and not _shut_down:
            _logger().warning(
                "traceroot: initialize() was called more than once; keeping the first "
                "configuration. Call traceroot.shutdown() first to re-initialize."
            )
            if redact is not None and _client.redact is None:
                _client.reconfigure(_client.config, redact, "explicit")
            return _client
        given = (api_key, host_url, flush_interval, batch_size, timeout, enabled)
        # Configured by the environment alone, as the launcher or a parent process (a spawned
        # pool worker runs the same initialize()) may have checked it: warned once for all.
        digest = None
        if all(v is None for v in (*given, environment, git_repo, git_ref)):
            digest = settings.configuration_digest(os.environ)
        checked = digest is not None and os.environ.get(settings.CHECKED_VARIABLE) == digest
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
            quiet=checked,
        )
        if digest is not None and not checked and _alone():
            os.environ[settings.CHECKED_VARIABLE] = digest
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

    ``deferred=True`` (the start-up hook): install the hooks only; the configuration is read
    and the integrations activated at the first import of an instrumented library (or of
    the OpenTelemetry API), the client started then, at the first span or at
    `initialize()`. Returns None until then.
    """
    global _client, _deferred
    try:
        with _lock:
            if _client is None and _deferred is None:
                environ = dict(os.environ)
                argv = getattr(sys, "argv", None) or [""]
                prepared = _Prepared(environ, argv[0])
                if settings.tracing_disabled(environ):
                    _client = _new_client(prepared.load(), None, "auto")
                    _install_exit_hooks()
                    return _client
                if settings.BY_FIELD["debug"].parse(environ.get("TRACEROOT_DEBUG", "")):
                    prepared.load()  # the debug log starts now, with the configuration
                # Before any thread exists: it may make the parent's context the process default.
                propagation.install()
                _deferred = prepared
                _install_exit_hooks()
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(after_in_child=_after_fork_in_child)
                watched = handed_down_watch(environ)
                if watched is None:  # not computed by the launcher: activate now
                    _activate(wait=True)
                else:
                    prepared.watched = [*watched, _ACTIVATION]
                    for module in prepared.watched:
                        import_hooks.when_imported(module, _activate_on_import)
                lifecycle.SigtermFlush(_flush_quietly).install()
                import_hooks.when_imported(_OTEL_API, _start_on_api_import)
                import_hooks.when_imported(_SDK_CLIENT, _start_on_api_import)
            if not deferred:
                _start_deferred()
            return _client
    except Exception as exc:
        _logger().warning(
            "traceroot: could not start tracing (%r); the program runs untraced.", exc
        )
        return None


def _after_fork_in_child() -> None:
    global _activation_lock, _activating
    if _activating is not None:
        # Forked while another thread was activating: that thread does not exist here, and
        # the lock it held would stay held for ever.
        _activation_lock = _thread.allocate_lock()
        _activating = None


def _activate_on_import() -> None:
    # Never waits: a thread activating may be importing the very module this thread is
    # inside; its activation instruments that module once its import is over.
    _activate(wait=False)


def _activate(*, wait: bool) -> None:
    """Activate the integrations of the deferred start-up, once, with a provider made when
    first needed: import hooks for their libraries, instrumenting those already imported."""
    global _activated, _activating
    prepared = _deferred
    if prepared is None:
        return
    if _activated:
        if wait and _activating not in (None, _thread.get_ident()):
            with _activation_lock:  # another thread is activating: wait for it
                pass
        return
    if not _activation_lock.acquire(blocking=wait):
        return
    try:
        if _activated:
            return
        _activated = True
        _activating = _thread.get_ident()
        config = prepared.load()
        # The modules themselves, not the package: this may run as the package imports them.
        from traceroot._integrations import activation, entry_points
        from traceroot._integrations.deferred import DeferredProvider

        later = DeferredProvider(_started_provider)
        activation.activate(
            config.integrations, later, explicit=False, warn=not config.shown_before
        )
        if config.otel_instrumentors:
            entry_points.activate_otel_instrumentors(later, message_spans=config.asgi_message_spans)
    except Exception as exc:  # never break the host program (nor the import under way)
        _logger().warning(
            "traceroot: could not activate the integrations (%s); the program runs on "
            "untraced by them",
            in_words(exc),
        )
    finally:
        _activating = None
        _activation_lock.release()
    for module in prepared.watched:
        import_hooks.forget(module, _activate_on_import)


def _start_deferred() -> TraceRootClient | None:
    """Start the client `auto_initialize(deferred=True)` prepared, if it has not started."""
    global _client, _deferred, _starting
    with _lock:
        prepared = _deferred
        if prepared is None or _client is not None or _starting:
            return _client
        _starting = True
        try:
            _activate(wait=True)
            config = prepared.load()
            try:
                client = _new_client(config, None, "auto")
            except Exception as exc:  # never break the host program
                from traceroot._frozen import replace

                _logger().warning(
                    "traceroot: could not start tracing (%s); the program runs untraced.",
                    in_words(exc),
                )
                client = _new_client(replace(config, enabled=False), None, "auto")
            _client = client
            _deferred = None
        finally:
            _starting = False
    provider = client.tracer_provider
    if provider is not None:
        from traceroot._integrations.activation import provider_ready

        provider_ready(provider)
    return client


def _started_provider() -> Any:
    """Our provider, starting the client for it (an instrumented library was imported).

    None while the client is being started (by this thread or another): this thread is
    inside an import (the hook runs there), and a starting thread may be waiting for that
    very module; waiting for it here would deadlock. The integration is instrumented once
    it has started.
    """
    while True:
        client = _client
        if client is not None:
            return client.tracer_provider
        if _starting:
            return None
        if _lock.acquire(timeout=0.05):
            try:
                if _starting:
                    return None
                return get_client().tracer_provider
            finally:
                _lock.release()


def _start_on_api_import() -> None:
    if _SDK_CLIENT in sys.modules and not import_hooks.imported(_SDK_CLIENT):
        return  # the client's module is loading: this runs again once it is complete
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
            from traceroot._config import load_config

            config = load_config()
            _debug_log(config)
            _client = _new_client(config, None, "lazy")
            _install_exit_hooks()
            if _client.enabled and _client.config.integrations:
                _client.activate_integrations(_client.config.integrations, explicit=False)
        return _client


def flush(timeout: float | None = None) -> bool:
    """Send every finished span now; bounded by `timeout` (default the shutdown timeout).

    True when all of them were delivered; False when time ran out, the backend refused
    them, or it is plainly absent (not waited for: the export retries in the background).
    """
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
        from traceroot import _integrations as integrations

        client.shutdown()
        integrations.deactivate()


def _shutdown_at_exit() -> None:
    # At exit only the flush matters; uninstrumenting libraries there is wasted work.
    client = _client
    if client is not None:
        client.shutdown()


def _flush_quietly() -> None:
    flush()


# -- what the launcher works out once for the processes it starts -----------------------


def _watch_key(environ: Mapping[str, str], path: Sequence[str]) -> str:
    """What the modules to watch depend on: the folders distributions are found in (and
    their times), and the variables choosing integrations and instrumentors."""
    from traceroot import _distributions as distributions

    entries = [
        entry
        for entry in path
        if entry
        and not (
            os.path.basename(entry) == "sitecustomize"
            and os.path.basename(os.path.dirname(entry)) == "traceroot"
        )  # the hook's own folder: on the program's path, not on the launcher's
    ]
    chosen = [
        environ.get(variable, "")
        for field in ("integrations", "otel_instrumentors")
        for variable in settings.BY_FIELD[field].variables
    ]
    chosen.append(environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", ""))
    return distributions.path_key(entries) + "|" + ";".join(chosen)


def handed_down_watch(environ: Mapping[str, str]) -> list[str] | None:
    """The modules to watch as the launcher found them for this environment, if it did
    (and it still holds: same folders, same times, same variables)."""
    value = environ.get(settings.WATCH_VARIABLE)
    if not value:
        return None
    key, _, modules = value.rpartition("|")
    if key != _watch_key(environ, sys.path):
        return None
    return [module for module in modules.split(",") if module]


def launcher_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """For `traceroot-run`: check the configuration of ``environ`` once (its warnings are
    shown now) and find the modules to watch; the variables that hand both to the program's
    processes. Never raises."""
    found: dict[str, str] = {}
    try:
        from traceroot._config import load_config

        config = load_config(environ=environ)
        found[settings.CHECKED_VARIABLE] = settings.configuration_digest(environ)
        if not config.enabled:
            return found
        # The warnings each process would find again, said once here for all of them.
        from traceroot._config import sdk_disabled_problem
        from traceroot._integrations.registry import parse_requested

        problem = sdk_disabled_problem(environ)
        if problem is not None:
            _logger().warning("traceroot: %s", problem)
        if isinstance(config.integrations, str):
            parse_requested(config.integrations, "TRACEROOT_INTEGRATIONS")
        from traceroot._integrations.activation import modules_to_watch

        modules = modules_to_watch(config.integrations, config.otel_instrumentors, environ)
        if modules is not None:
            # The launcher's own folder (sys.path[0]) is not on the program's path.
            path = sys.path if getattr(sys.flags, "safe_path", False) else sys.path[1:]
            found[settings.WATCH_VARIABLE] = _watch_key(environ, path) + "|" + ",".join(modules)
    except Exception as exc:  # the program runs all the same; each process finds its own
        _logger().debug("traceroot: could not prepare the start-up hook: %r", exc)
    return found

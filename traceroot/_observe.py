"""`@observe`: one span per call of a function, coroutine, generator or async generator."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import traceback
from collections.abc import AsyncGenerator, Callable, Generator
from types import CodeType, FrameType
from typing import Any, TypeVar, overload

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from traceroot import _attributes as attr
from traceroot import _client as client_module
from traceroot import _compat as compat
from traceroot import _run_parents as run_parents
from traceroot._client import TraceRootClient, get_client
from traceroot._config import tracing_disabled
from traceroot._errors import exception_message, in_words
from traceroot._serialize import as_id, as_tags, to_json, to_output_value
from traceroot._span_kind import SpanKind

logger = logging.getLogger("traceroot")

F = TypeVar("F", bound=Callable[..., Any])

# A generator's output is the list of what it yielded; past this many items we stop keeping them.
MAX_GENERATOR_ITEMS = 1000

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_SKIPPED_PARTS = (f"{os.sep}opentelemetry{os.sep}", f"{os.sep}openinference{os.sep}")


@overload
def observe(name: F) -> F: ...


@overload
def observe(
    name: str | None = None,
    type: SpanKind | str = SpanKind.SPAN,
    metadata: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
    session_id: str | None = None,
    user_id: str | None = None,
) -> Callable[[F], F]: ...


def observe(
    name: Any = None,
    type: SpanKind | str = SpanKind.SPAN,  # noqa: A002 - the documented parameter name
    metadata: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
    session_id: str | None = None,
    user_id: str | None = None,
) -> Any:
    """Trace each call of the decorated function as a span.

    Usable bare (`@observe`) or with arguments (`@observe(name=..., type="tool")`), which
    may also be given in the documented order (`@observe("search", "tool")`), as 0.5.0 takes them.
    Exceptions mark the span ERROR and are re-raised unchanged.
    """
    options = dict(
        kind=_kind(type),
        metadata=metadata,
        tags=tags,
        capture_input=capture_input,
        capture_output=capture_output,
        session_id=session_id,
        user_id=user_id,
    )
    if callable(name) or isinstance(name, classmethod | staticmethod):
        return _decorate(name, None, **options)

    def decorator(func: F) -> F:
        return _decorate(func, name, **options)

    return decorator


def _kind(value: SpanKind | str) -> SpanKind:
    try:
        return SpanKind(str(value).strip().lower())
    except ValueError:
        logger.warning(
            "traceroot: unknown span type %r; using 'span'. Valid types: %s.",
            value,
            ", ".join(k.value for k in SpanKind),
        )
        return SpanKind.SPAN


def _disabled() -> bool:
    """Tracing is off: by the client once there is one (its arguments win), else by the env."""
    client = client_module.current_client()
    if client is not None:
        return not client.config.enabled
    return tracing_disabled()


def _decorate(func: Any, name: str | None, **options: Any) -> Any:
    if _disabled():
        return func  # TRACEROOT_ENABLED=false: the function itself, at no cost per call
    if isinstance(func, classmethod | staticmethod):
        return type(func)(_decorate(func.__func__, name, **options))
    span_name = str(getattr(func, "__name__", None) or type(func).__name__)
    try:
        if name is not None and not isinstance(name, str):
            name = str(name)  # a span name is a string on the wire: observe(name=42) is "42"
        return _Observed(func, name or span_name, **options).wrapper()
    except Exception as exc:  # a name, tags or metadata that cannot be read: never the program's
        logger.warning(
            "traceroot: @observe on %s: its name, tags or metadata could not be read (%s); "
            "it is traced without them.",
            span_name,
            in_words(exc),
        )
    plain = {**options, "metadata": None, "tags": None, "session_id": None, "user_id": None}
    return _Observed(func, span_name, **plain).wrapper()


class _Observed:
    """What one decoration knows: the function, its signature and the static attributes."""

    def __init__(
        self,
        func: Callable[..., Any],
        name: str,
        *,
        kind: SpanKind,
        metadata: dict[str, Any] | None,
        tags: list[str] | None,
        capture_input: bool,
        capture_output: bool,
        session_id: str | None,
        user_id: str | None,
    ) -> None:
        self.func = func
        self.name = name
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.static: dict[str, Any] = {attr.SPAN_TYPE: kind.value}
        if session_id:
            self.static[attr.TRACE_SESSION_ID] = as_id(session_id)
        if user_id:
            self.static[attr.TRACE_USER_ID] = as_id(user_id)
        if metadata:
            self.static[attr.SPAN_METADATA] = to_json(metadata)
        if tags:
            self.static[attr.SPAN_TAGS] = tuple(as_tags(tags))
        try:
            self.signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            self.signature = None
        params = list(self.signature.parameters) if self.signature else []
        self.skip_first = bool(params) and params[0] in ("self", "cls")
        # Plain positional-or-keyword parameters bind without inspect's general machinery.
        plain = self.signature is not None and all(
            p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            for p in self.signature.parameters.values()
        )
        self.plain_params: list[tuple[str, Any]] | None = (
            [(p.name, p.default) for p in self.signature.parameters.values()]
            if plain and self.signature is not None
            else None
        )
        # The usual call passes every plain parameter by position: it binds by zip.
        self.positional_names: tuple[str, ...] | None = (
            tuple(name for name, _ in self.plain_params) if self.plain_params is not None else None
        )

    def wrapper(self) -> Any:
        func = self.func
        if inspect.isasyncgenfunction(func):
            wrapped: Any = self._async_gen_wrapper()
        elif inspect.isgeneratorfunction(func):
            wrapped = self._gen_wrapper()
        elif inspect.iscoroutinefunction(func):
            wrapped = self._async_wrapper()
        else:
            wrapped = self._sync_wrapper()
        return functools.wraps(func)(wrapped)

    def _start(
        self, client: TraceRootClient, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Span, context_api.Context, context_api.Context]:
        """The call's span, the context it is current in, and the one it was started in."""
        # The current context is read once: the parent, sampling and stamping all use it.
        parent_context = run_parents.current_context()
        parent = trace.get_current_span(parent_context)
        skipped = client.unsampled_child(parent)
        if skipped is not None:  # inside an unsampled trace: nothing to capture
            return skipped, trace.set_span_in_context(skipped, parent_context), parent_context
        # One attribute dict at start: each separate set_attribute call costs a lock
        # and a validation pass in the OpenTelemetry SDK.
        attributes = self.static.copy()
        try:
            if self.capture_input:
                attributes[attr.SPAN_INPUT] = to_json(
                    self._bound_arguments(args, kwargs), client.config.max_attribute_length
                )
            _add_source(attributes, client, compat.caller_frame(3))
        except Exception as exc:  # capture is best-effort; the call itself must go ahead
            logger.debug("traceroot: capturing the input of %s failed: %r", self.name, exc)
        span = client.start_span(self.name, attributes, parent_context, parent)
        return span, trace.set_span_in_context(span, parent_context), parent_context

    def _bound_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        names = self.positional_names
        if names is not None and not kwargs and len(args) == len(names):
            arguments = dict(zip(names, args, strict=True))
            if self.skip_first:
                del arguments[names[0]]
            return arguments
        if self.plain_params is not None:
            fast = self._bind_plain(self.plain_params, args, kwargs)
            if fast is not None:
                return fast
        if self.signature is None:
            return {"args": list(args), "kwargs": kwargs}
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError:
            return {"args": list(args), "kwargs": kwargs}
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if self.skip_first:
            arguments.pop(next(iter(self.signature.parameters)), None)
        return arguments

    def _bind_plain(
        self, params: list[tuple[str, Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        """`signature.bind` + `apply_defaults` for plain parameters; None when it would fail."""
        if len(args) > len(params) or len(args) + len(kwargs) > len(params):
            return None
        arguments: dict[str, Any] = {}
        used = 0
        for index, (name, default) in enumerate(params):
            if index < len(args):
                arguments[name] = args[index]
            elif name in kwargs:
                arguments[name] = kwargs[name]
                used += 1
            elif default is not inspect.Parameter.empty:
                arguments[name] = default
            else:
                return None  # a required argument is missing: the call will raise
        if used != len(kwargs):
            return None  # an unknown or duplicated keyword
        if self.skip_first:
            arguments.pop(params[0][0], None)
        return arguments

    def _finish(self, span: Span, client: TraceRootClient, result: Any) -> None:
        if not self.capture_output or result is None or not span.is_recording():
            return
        try:
            # An output the function set itself with update_current_span() is kept. A light
            # span checks and sets in one call.
            set_once = getattr(span, "set_attribute_once", None)
            limit = client.config.max_attribute_length
            if set_once is not None:
                set_once(attr.SPAN_OUTPUT, to_output_value(result, limit))
            elif attr.SPAN_OUTPUT not in (getattr(span, "attributes", None) or {}):
                span.set_attribute(attr.SPAN_OUTPUT, to_output_value(result, limit))
        except Exception as exc:
            logger.debug("traceroot: capturing the output of %s failed: %r", self.name, exc)

    # -- the four wrappers: each is the call's syntax around one _Scope

    def _sync_wrapper(self) -> Callable[..., Any]:
        func = self.func

        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            client = get_client()
            if not client.enabled:
                return func(*args, **kwargs)
            scope = _Scope(self, client, args, kwargs)
            try:
                scope.attach()  # in the try: a Ctrl-C right after it still gives it back
                result = func(*args, **kwargs)
            except BaseException as exc:
                scope.close(exc)
                raise
            try:
                scope.close(None, result)
            except BaseException:  # a Ctrl-C as it began: the span is still current
                scope.give_back()
                raise
            return result

        return sync_wrapper

    def _async_wrapper(self) -> Callable[..., Any]:
        func = self.func

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            client = get_client()
            if not client.enabled:
                return await func(*args, **kwargs)
            scope = _Scope(self, client, args, kwargs)
            try:
                scope.attach()  # in the try: a Ctrl-C right after it still gives it back
                result = await func(*args, **kwargs)
            except BaseException as exc:
                scope.close(exc)
                raise
            try:
                scope.close(None, result)
            except BaseException:  # a Ctrl-C as it began: the span is still current
                scope.give_back()
                raise
            return result

        return async_wrapper

    def _gen_wrapper(self) -> Callable[..., Any]:
        func = self.func

        def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            client = get_client()
            if not client.enabled:
                return (yield from func(*args, **kwargs))
            scope = _Scope(self, client, args, kwargs)
            inner = func(*args, **kwargs)
            send: Any = None
            thrown: BaseException | None = None
            while True:
                # The body runs inside the span; the consumer, between items, does not.
                scope.attach()
                try:
                    item = inner.throw(thrown) if thrown is not None else inner.send(send)
                except StopIteration as stop:
                    scope.close(None, scope.collected())
                    return stop.value
                except BaseException as exc:
                    scope.close(exc)
                    raise
                thrown = None
                scope.detach()
                scope.keep(item)
                try:
                    send = yield item
                except GeneratorExit:
                    scope.attach()
                    try:
                        inner.close()  # its cleanup runs inside our span
                    finally:
                        scope.close(None)
                    raise
                except BaseException as exc:  # thrown in by the consumer: pass it on
                    thrown = exc

        return gen_wrapper

    def _async_gen_wrapper(self) -> Callable[..., Any]:
        func = self.func

        async def async_gen_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            client = get_client()
            if not client.enabled:
                async for item in func(*args, **kwargs):
                    yield item
                return
            scope = _Scope(self, client, args, kwargs)
            inner = func(*args, **kwargs)
            send: Any = None
            thrown: BaseException | None = None
            while True:
                scope.attach()
                try:
                    if thrown is not None:
                        item = await inner.athrow(thrown)
                    else:
                        item = await inner.asend(send)
                except StopAsyncIteration:
                    scope.close(None, scope.collected())
                    return
                except BaseException as exc:
                    scope.close(exc)
                    raise
                thrown = None
                scope.detach()
                scope.keep(item)
                try:
                    send = yield item
                except GeneratorExit:
                    scope.attach()
                    try:
                        await inner.aclose()  # its cleanup runs inside our span
                    finally:
                        scope.close(None)
                    raise
                except BaseException as exc:
                    thrown = exc

        return async_gen_wrapper


class _Scope:
    """One traced call: start the span, attach it, record the error or capture the output,
    detach, end. Written once; the wrappers above only add their call's syntax."""

    __slots__ = ("observed", "client", "span", "context", "parent_context", "token", "items")

    def __init__(
        self,
        observed: _Observed,
        client: TraceRootClient,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.observed = observed
        self.client = client
        self.span, self.context, self.parent_context = observed._start(client, args, kwargs)
        self.token: object | None = None  # attach() makes it current, inside the wrapper's try
        self.items: list[Any] | None = None

    def attach(self) -> None:
        """Make the span current (a generator's body is about to run)."""
        self.token = context_api.attach(self.context)

    def detach(self) -> None:
        """Give the context back (the call returned, or a generator yielded)."""
        token, self.token = self.token, None
        if token is not None:
            context_api.detach(token)  # type: ignore[arg-type]

    def close(self, error: BaseException | None, result: Any = None) -> None:
        """End the call: the error recorded (an Exception), or the result captured."""
        try:
            if error is None:
                self.observed._finish(self.span, self.client, result)
            elif isinstance(error, Exception):
                try:
                    _record_error(self.span, error)
                except Exception as exc:  # the program's exception goes on, whatever its shape
                    logger.debug("traceroot: recording an exception failed: %r", exc)
        finally:
            token, self.token = self.token, None  # detach(), inline: this runs at every call
            if token is not None:
                try:
                    context_api.detach(token)  # type: ignore[arg-type]
                except BaseException:
                    # A Ctrl-C raised before the context was given back: every later span
                    # would have been this one's child. Given back now, then it goes on.
                    if context_api.get_current() is self.context:
                        context_api.detach(token)  # type: ignore[arg-type]
                    raise
            elif error is not None and context_api.get_current() is self.context:
                # A Ctrl-C raised in attach() once it had made the span current, before it
                # returned the token: the context the span started in is current again.
                context_api.attach(self.parent_context)
            self.span.end()

    def give_back(self) -> None:
        """After close() was cut short at its start: the context given back, the span ended."""
        self.detach()
        if self.span.is_recording():
            self.span.end()

    def keep(self, item: Any) -> None:
        """Remember one yielded item for the generator's output."""
        items = self.items
        if items is None:
            items = self.items = []
        if len(items) <= MAX_GENERATOR_ITEMS:
            items.append(item)

    def collected(self) -> Any:
        """The generator's output: what it yielded, bounded."""
        items = self.items
        if not items:
            return None
        if len(items) > MAX_GENERATOR_ITEMS:
            return [*items[:MAX_GENERATOR_ITEMS], f"...[more than {MAX_GENERATOR_ITEMS} items]"]
        return items


# Set on an exception once its stack trace is recorded: the spans it then passes through
# get its type and message only. Formatting the growing traceback at every traced frame
# made an exception through N frames cost O(N^2).
_RECORDED = "__traceroot_recorded__"


def _stacktrace(exc: BaseException) -> str:
    """The exception's stack trace as the span keeps it: from the decorated function down.

    It was caught in our wrapper, so its traceback starts with the wrapper's frame, which
    says nothing of the program's error.
    """
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_globals.get("__name__") == __name__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _record_error(span: Span, exc: BaseException) -> None:
    if not span.is_recording():
        return
    text = exception_message(exc)
    message = f"{type(exc).__name__}: {text}"
    if _first_record(exc):
        span.record_exception(exc, {"exception.stacktrace": _stacktrace(exc)})
    else:
        kind = type(exc)
        module = kind.__module__
        span.add_event(
            "exception",
            {
                "exception.type": (
                    f"{module}.{kind.__qualname__}"
                    if module and module != "builtins"
                    else kind.__qualname__
                ),
                "exception.message": text,
                "exception.escaped": "False",
            },
        )
    span.set_status(Status(StatusCode.ERROR, message))


def _first_record(exc: BaseException) -> bool:
    """Whether this is the first span to record `exc` (which is then marked)."""
    try:
        if getattr(exc, _RECORDED, False):
            return False
        setattr(exc, _RECORDED, True)
    except Exception:  # an exception type that takes no attributes: record it every time
        return True
    return True


# What a code object says about the call sites in it: whether it is ours or OpenTelemetry's
# (skipped: the call site is further out), else its file (relative) and function name,
# and the line of each instruction seen. Looking the code up by id is one dict probe,
# where the file name tests and the line lookup cost several calls at every span.
# The entry holds the code, so its id is not reused while it is cached.
_Site = tuple[CodeType, str | None, str, dict[int, Any]]
_sites: dict[int, _Site] = {}
_relative_paths: dict[str, str] = {}  # one answer per file, whatever the cwd does later
_MAX_SITES = 4096
_MAX_LINES_PER_SITE = 256


def _site(code: CodeType, client: TraceRootClient) -> _Site:
    filename = code.co_filename
    ours = filename.startswith(_PACKAGE_DIR) or any(p in filename for p in _SKIPPED_PARTS)
    relative = None
    if not ours:
        relative = _relative_paths.get(filename)
        if relative is None:
            relative = _relative_paths[filename] = _relative_path(filename, client)
    if len(_sites) >= _MAX_SITES:
        _sites.clear()
    site = _sites[id(code)] = (code, relative, code.co_name, {})
    return site


def _add_source(
    attributes: dict[str, Any], client: TraceRootClient, frame: FrameType | None
) -> None:
    """The call site: the first frame outside traceroot and OpenTelemetry/OpenInference."""
    while frame is not None:
        code = frame.f_code
        site = _sites.get(id(code))
        if site is None or site[0] is not code:
            site = _site(code, client)
        if site[1] is not None:
            break
        frame = frame.f_back
    else:
        return
    lines = site[3]
    offset = frame.f_lasti
    line = lines.get(offset, lines)  # the dict itself: not seen yet (a line may be None)
    if line is lines:
        line = frame.f_lineno
        if len(lines) < _MAX_LINES_PER_SITE:
            lines[offset] = line
    attributes[attr.GIT_SOURCE_FILE] = site[1]
    attributes[attr.GIT_SOURCE_LINE] = line
    attributes[attr.GIT_SOURCE_FUNCTION] = site[2]


def _relative_path(filename: str, client: TraceRootClient) -> str:
    absolute = os.path.abspath(filename)
    for base in (client.git.root, os.getcwd()):
        if base is None:
            continue
        try:
            relative = os.path.relpath(absolute, base)
        except ValueError:
            continue
        if not relative.startswith(os.pardir):
            return relative
    return absolute

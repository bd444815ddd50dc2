"""Adapters for integrations that are not a plain OpenInference instrumentor."""

from __future__ import annotations

import inspect
import logging
import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.trace import Span, Tracer, TracerProvider, get_current_span, use_span

from traceroot import _run_parents as run_parents

logger = logging.getLogger("traceroot")


class OpenAIInstrumentor:
    """OpenInference's OpenAI instrumentor; its streams made to end their span on ``close()``.

    Releases before 0.1.66 (the only ones that instrument openai < 2.8) end a stream's span
    only when it is read to the end: a stream closed half-way lost its call from the trace.
    """

    def __init__(self) -> None:
        from openinference.instrumentation.openai import OpenAIInstrumentor

        self._inner = OpenAIInstrumentor()

    def instrument(self, tracer_provider: TracerProvider) -> None:
        self._inner.instrument(tracer_provider=tracer_provider)
        _end_stream_spans_on_close()

    def uninstrument(self) -> None:
        self._inner.uninstrument()

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return bool(self._inner.is_instrumented_by_opentelemetry)


def _end_stream_spans_on_close() -> None:
    """Give an older instrumentor's stream proxy the ``close()`` newer releases have."""
    try:
        from openinference.instrumentation.openai._stream import _Stream
    except ImportError:  # laid out differently: a release this shim is not for
        return
    if "close" in vars(_Stream) or not callable(getattr(_Stream, "_finish_tracing", None)):
        return

    def finish(stream: Any) -> None:
        try:
            if not stream._self_is_finished:
                from opentelemetry.trace import Status, StatusCode

                stream._finish_tracing(status=Status(StatusCode.OK))
        except Exception:  # the span is lost, never the program's close()
            logger.debug("traceroot: ending a closed OpenAI stream's span failed", exc_info=True)

    def close(self: Any) -> Any:
        result = self.__wrapped__.close()
        if inspect.isawaitable(result):  # AsyncStream.close() is a coroutine

            async def closing() -> Any:
                try:
                    return await result
                finally:
                    finish(self)

            return closing()
        finish(self)
        return result

    _Stream.close = close  # type: ignore[method-assign]


class AnthropicInstrumentor:
    """OpenInference's Anthropic instrumentor, with the client's own call spans turned off.

    Recent anthropic releases trace every API call themselves on the global tracer
    provider, which would give two spans per call; the OpenInference one is what the
    backend reads. Clients made with an explicit ``open_telemetry`` option keep it.
    """

    _ENV = "ANTHROPIC_OPEN_TELEMETRY"

    def __init__(self) -> None:
        from openinference.instrumentation.anthropic import AnthropicInstrumentor

        self._inner = AnthropicInstrumentor()
        self._set_env = False

    def instrument(self, tracer_provider: TracerProvider) -> None:
        self._inner.instrument(tracer_provider=tracer_provider)
        _nest_stream_requests()
        if self._ENV not in os.environ:
            os.environ[self._ENV] = "false"
            self._set_env = True

    def uninstrument(self) -> None:
        self._inner.uninstrument()
        if self._set_env:
            os.environ.pop(self._ENV, None)
            self._set_env = False

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return bool(self._inner.is_instrumented_by_opentelemetry)


# OpenInference's proxies of the managers `messages.stream()` returns (and the beta ones).
_STREAM_MANAGERS = ("_MessageStreamManager", "_BetaMessageStreamManager")
_ASYNC_STREAM_MANAGERS = ("_AsyncMessageStreamManager", "_BetaAsyncMessageStreamManager")


def _nest_stream_requests() -> None:
    """Make a stream's LLM span current while the stream's request is sent.

    `messages.stream()` sends nothing: its manager's `__enter__` does, once the
    instrumentor's span is no longer current, so the HTTP client's span (`POST`) came out
    beside the LLM span instead of under it, as it is for `messages.create()`.
    """
    try:
        from openinference.instrumentation.anthropic import _wrappers
    except ImportError:  # laid out differently: a release this shim is not for
        return
    for names, method, nest in (
        (_STREAM_MANAGERS, "__enter__", _entered_under_its_span),
        (_ASYNC_STREAM_MANAGERS, "__aenter__", _async_entered_under_its_span),
    ):
        for name in names:
            manager = getattr(_wrappers, name, None)
            enter = vars(manager).get(method) if isinstance(manager, type) else None
            if enter is not None and not getattr(enter, "_traceroot_nested", False):
                setattr(manager, method, nest(enter))


def _stream_span(manager: Any) -> Span | None:
    span = getattr(getattr(manager, "_self_with_span", None), "_span", None)
    return span if isinstance(span, Span) else None


def _entered_under_its_span(enter: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def nested(self: Any) -> Any:
        span = _stream_span(self)
        if span is None:
            return enter(self)
        # The instrumentor records a failed request itself.
        with use_span(span, record_exception=False, set_status_on_exception=False):
            return enter(self)

    nested._traceroot_nested = True  # type: ignore[attr-defined]
    return nested


def _async_entered_under_its_span(enter: Callable[[Any], Any]) -> Callable[[Any], Any]:
    async def nested(self: Any) -> Any:
        span = _stream_span(self)
        if span is None:
            return await enter(self)
        with use_span(span, record_exception=False, set_status_on_exception=False):
            return await enter(self)

    nested._traceroot_nested = True  # type: ignore[attr-defined]
    return nested


class LangChainInstrumentor:
    """OpenInference's LangChain instrumentor; what runs inside a LangChain run nests in it.

    Its tracer keeps runs' spans out of the OpenTelemetry context, so an ``@observe``
    function (or an OpenAI call) inside a runnable or a LangGraph node would be a sibling of
    the node, under the span current when the graph started. The run the code runs in is in
    LangChain's own context variable; OpenInference's public ``get_current_span()`` reads it.
    """

    def __init__(self) -> None:
        from openinference.instrumentation.langchain import LangChainInstrumentor

        self._inner = LangChainInstrumentor()
        self._run_span: run_parents.RunSpan | None = None

    def instrument(self, tracer_provider: TracerProvider) -> None:
        self._inner.instrument(tracer_provider=tracer_provider)
        _stream_closed_is_no_error()
        try:  # public since openinference-instrumentation-langchain 0.1.2x
            from openinference.instrumentation.langchain import get_current_span
        except ImportError:  # an older release: its runs' children stay where they were
            return
        if self.is_instrumented_by_opentelemetry:
            self._run_span = get_current_span
            run_parents.register(get_current_span)

    def uninstrument(self) -> None:
        if self._run_span is not None:
            run_parents.unregister(self._run_span)
            self._run_span = None
        self._inner.uninstrument()

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return bool(self._inner.is_instrumented_by_opentelemetry)


def _stream_closed_is_no_error() -> None:
    """A stream its reader stopped early is not a failed call.

    LangChain reports the GeneratorExit of a stream closed half-way (``next(llm.stream())``,
    a ``break``) as the LLM run's error, so the span, and the trace with it, read as failed.
    OpenInference keeps a list of error patterns that mean an ordinary stop (LangGraph's
    interrupts); GeneratorExit joins them. A release without that list is left as it is.
    """
    try:
        from openinference.instrumentation.langchain import _tracer
    except ImportError:
        return
    patterns = getattr(_tracer, "IGNORED_EXCEPTION_PATTERNS", None)
    if isinstance(patterns, list) and _GENERATOR_EXIT not in patterns:
        patterns.append(_GENERATOR_EXIT)


_GENERATOR_EXIT = r"^GeneratorExit\("


class PydanticAIInstrumentor:
    """Turns on Pydantic AI's native spans and reshapes them into OpenInference ones.

    Each span is reshaped as it ends, before any processor sees it: OpenInference's span
    processor would do it in ``on_end``, after ours (added first) has exported it as it was.
    """

    def instrument(self, tracer_provider: TracerProvider) -> None:
        from pydantic_ai import Agent, InstrumentationSettings

        reshaping = _ReshapingProvider(tracer_provider, _reshape_pydantic_ai)
        Agent.instrument_all(InstrumentationSettings(tracer_provider=reshaping))  # type: ignore[arg-type]

    def uninstrument(self) -> None:
        from pydantic_ai import Agent

        Agent.instrument_all(False)


Reshape = Callable[[Span], None]


class _ReshapingProvider:
    """Hands out tracers whose spans are reshaped (``reshape``) just before they end."""

    def __init__(self, inner: TracerProvider, reshape: Reshape) -> None:
        self._inner = inner
        self._reshape = reshape

    def get_tracer(self, *args: Any, **kwargs: Any) -> Tracer:
        return _ReshapingTracer(self._inner.get_tracer(*args, **kwargs), self._reshape)


class _ReshapingTracer(Tracer):
    def __init__(self, inner: Tracer, reshape: Reshape) -> None:
        self._inner = inner
        self._reshape = reshape

    def __getattr__(self, name: str) -> Any:
        if name in ("_inner", "_reshape"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        span = self._inner.start_span(*args, **kwargs)
        return _ReshapedSpan(span, self._reshape)  # type: ignore[return-value]

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, *args: Any, end_on_exit: bool = True, **kwargs: Any
    ) -> Iterator[Span]:
        span = self.start_span(*args, **kwargs)
        with use_span(span, end_on_exit=end_on_exit, record_exception=True) as current:
            yield current


class _ReshapedSpan(wrapt.ObjectProxy):  # type: ignore[misc]
    """A span that takes OpenInference's reading of its attributes just before it ends."""

    def __init__(self, span: Span, reshape: Reshape) -> None:
        super().__init__(span)
        self._self_reshape = reshape

    def end(self, end_time: int | None = None) -> None:
        try:
            span = self.__wrapped__
            if span.is_recording() and span.attributes:
                self._self_reshape(span)
        except Exception:  # a library change costs the reshaping, never the span
            logger.debug("traceroot: reshaping a span failed", exc_info=True)
        self.__wrapped__.end(end_time)

    def __exit__(self, *exc: Any) -> None:
        self.end()


def _reshape_pydantic_ai(span: Any) -> None:
    from openinference.instrumentation.pydantic_ai.semantic_conventions import get_attributes

    span.set_attributes(dict(get_attributes(span.attributes)))


def _reshape_agent_framework(span: Any) -> None:
    from openinference.instrumentation.agent_framework.semantic_conventions import (
        get_attributes,
    )

    span_id = span.get_span_context().span_id
    span.set_attributes(dict(get_attributes(dict(span.attributes), span.name, span_id)))


class AgentFrameworkInstrumentor:
    """Turns on Agent Framework's native spans and reshapes them into OpenInference ones.

    As Pydantic AI's, each span is reshaped as it ends (OpenInference ships the mapping as
    a span processor, which would run after ours has exported the span). The framework
    takes its tracer from ``agent_framework.observability.get_tracer`` for every span.
    """

    def instrument(self, tracer_provider: TracerProvider) -> None:
        from agent_framework import observability

        if not isinstance(vars(observability).get("get_tracer"), wrapt.FunctionWrapper):
            wrapt.wrap_function_wrapper(observability, "get_tracer", _reshaping_tracer)
        observability.enable_instrumentation()

    def uninstrument(self) -> None:
        """Agent Framework has no switch back off; its spans stay OpenInference-shaped."""
        from agent_framework import observability

        wrapper = vars(observability).get("get_tracer")
        if isinstance(wrapper, wrapt.FunctionWrapper):
            observability.get_tracer = wrapper.__wrapped__


def _reshaping_tracer(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Tracer:
    return _ReshapingTracer(wrapped(*args, **kwargs), _reshape_agent_framework)


class DSPyInstrumentor:
    """OpenInference's DSPy instrumentor, with token counts on its LM spans.

    Its ``LM.__call__`` span records the model but not the usage, which DSPy hands to the
    LM's history while that span is current; the counts are taken from there.
    """

    def __init__(self) -> None:
        from openinference.instrumentation.dspy import DSPyInstrumentor

        self._inner = DSPyInstrumentor()

    def instrument(self, tracer_provider: TracerProvider) -> None:
        from dspy.clients.base_lm import BaseLM

        self._inner.instrument(tracer_provider=tracer_provider)
        if not isinstance(vars(BaseLM).get("update_history"), wrapt.FunctionWrapper):
            wrapt.wrap_function_wrapper(BaseLM, "update_history", _record_dspy_usage)

    def uninstrument(self) -> None:
        from dspy.clients.base_lm import BaseLM

        self._inner.uninstrument()
        wrapper = vars(BaseLM).get("update_history")
        if isinstance(wrapper, wrapt.FunctionWrapper):
            BaseLM.update_history = wrapper.__wrapped__  # type: ignore[method-assign]

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return bool(self._inner.is_instrumented_by_opentelemetry)


def _record_dspy_usage(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``BaseLM.update_history``: its entry's token counts onto the current LM span."""
    try:
        entry = args[0] if args else kwargs.get("entry")
        _set_token_counts(get_current_span(), (entry or {}).get("usage"))
    except Exception:  # a DSPy change costs the counts, never the call
        logger.debug("traceroot: reading DSPy usage failed", exc_info=True)
    return wrapped(*args, **kwargs)


def _set_token_counts(span: Span, usage: Any) -> None:
    """OpenAI-style ``usage`` (a mapping) as OpenInference token counts on an LLM span."""
    attributes = getattr(span, "attributes", None) or {}
    if not span.is_recording() or attributes.get("openinference.span.kind") != "LLM":
        return
    if "llm.token_count.prompt" in attributes or not isinstance(usage, dict):
        return
    counts = {
        "llm.token_count.prompt": usage.get("prompt_tokens"),
        "llm.token_count.completion": usage.get("completion_tokens"),
        "llm.token_count.total": usage.get("total_tokens"),
    }
    span.set_attributes({k: v for k, v in counts.items() if isinstance(v, int)})


class ClaudeAgentSDKInstrumentor:
    """OpenInference's Claude Agent SDK instrumentor, with the SDK's answers to the CLI
    made in the context its messages are read in.

    The SDK answers the CLI's requests (a call of a tool on an in-process MCP server, a
    hook, a permission check) in tasks of the reader it starts on connecting: under
    ``ClaudeSDKClient`` that is before any turn's agent span, so whatever those answers
    trace would start traces of its own. They run instead in the context current where
    the messages are consumed (the turn's agent span), and a tool call carries it to the
    MCP server in ``params._meta``, as an MCP client propagates trace context.
    """

    _WRAPPERS: tuple[tuple[str, Callable[..., Any]], ...] = ()  # filled in below

    def __init__(self) -> None:
        from openinference.instrumentation.claude_agent_sdk import ClaudeAgentSDKInstrumentor

        self._inner = ClaudeAgentSDKInstrumentor()

    def instrument(self, tracer_provider: TracerProvider) -> None:
        from claude_agent_sdk._internal.query import Query

        self._inner.instrument(tracer_provider=tracer_provider)
        for name, wrapper in self._WRAPPERS:
            method = vars(Query).get(name)
            # A release without one of these methods keeps OpenInference's behaviour.
            if callable(method) and not isinstance(method, wrapt.FunctionWrapper):
                wrapt.wrap_function_wrapper(Query, name, wrapper)

    def uninstrument(self) -> None:
        from claude_agent_sdk._internal.query import Query

        self._inner.uninstrument()
        for name, _ in self._WRAPPERS:
            method = vars(Query).get(name)
            if isinstance(method, wrapt.FunctionWrapper):
                setattr(Query, name, method.__wrapped__)

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return bool(self._inner.is_instrumented_by_opentelemetry)


_READING = "_traceroot_reading_context"  # on a Query: the context its messages are read in


def _record_reading_context(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Query.receive_messages``: notes the consumer's context as it starts reading."""

    async def reading() -> Any:
        try:
            setattr(instance, _READING, otel_context.get_current())
        except Exception:  # an SDK change costs the nesting, never the messages
            logger.debug("traceroot: noting the Claude Agent SDK's context failed", exc_info=True)
        # Closed with ours, as the SDK closes its own generators (not left to the collector).
        async with aclosing(wrapped(*args, **kwargs)) as messages:
            async for message in messages:
                yield message

    return reading()


async def _answer_in_reading_context(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Query._handle_control_request``: run under the context the messages are read in."""
    reading = getattr(instance, _READING, None)
    if reading is None:
        return await wrapped(*args, **kwargs)
    token = otel_context.attach(reading)
    try:
        return await wrapped(*args, **kwargs)
    finally:
        otel_context.detach(token)


# The spans whose context went to an SDK MCP server, by span id: the server's spans start
# under a remote copy of it, which ``propagated_span`` turns back into the span.
_propagated: weakref.WeakValueDictionary[int, Span] = weakref.WeakValueDictionary()


def propagated_span(remote: Span) -> Span | None:
    """The span whose context this adapter handed an SDK MCP server, if ``remote`` is it."""
    context = remote.get_span_context()
    span = _propagated.get(context.span_id)
    if span is None or span.get_span_context().trace_id != context.trace_id:
        return None
    return span


async def _propagate_to_mcp_server(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Query._handle_sdk_mcp_request``: the current trace context into the request's
    ``params._meta`` (unless the CLI sent one), where the MCP server reads its parent:
    the server's session outlives a turn, so the context it started in would not do."""
    try:
        message = args[1] if len(args) > 1 else kwargs.get("message")
        params = message.get("params") if isinstance(message, dict) else None
        span = get_current_span()
        if isinstance(params, dict) and span.get_span_context().is_valid:
            meta = params.setdefault("_meta", {})
            if isinstance(meta, dict) and "traceparent" not in meta:
                # Imported here: `opentelemetry.propagate` reads every distribution's entry
                # points when it loads, which each program importing openai would pay for.
                from opentelemetry import propagate

                propagate.inject(meta)
                _propagated[span.get_span_context().span_id] = span
    except Exception:
        logger.debug("traceroot: propagating to an SDK MCP server failed", exc_info=True)
    return await wrapped(*args, **kwargs)


ClaudeAgentSDKInstrumentor._WRAPPERS = (
    ("receive_messages", _record_reading_context),
    ("_handle_control_request", _answer_in_reading_context),
    ("_handle_sdk_mcp_request", _propagate_to_mcp_server),
)

"""One LLM call, one LLM span: tracers whose spans would repeat an integration's LLM span.

Where a library (or a second instrumentor) makes its own span for a call that one of
our integrations already records, that span steps aside: it becomes a non-recording
span carrying the LLM span's context, so its children still nest under the LLM span.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    Tracer,
    TracerProvider,
    get_current_span,
    use_span,
)

from traceroot import _compat as compat
from traceroot._attributes import OI_SPAN_KIND, WRAPS_LLM_CALLS
from traceroot._integrations.registry import OI, Integration


class _Yielding:
    """The provider given yielding tracers, its hook, and which integrations are active."""

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        self.hook: Callable[..., Tracer] | None = None
        self.is_active: Callable[[Integration], bool] = lambda _: False


_yielding = _Yielding()


# Tracers whose spans repeat, for the same call, an LLM span one of our integrations
# already makes: tracer (instrumentation scope) name -> (that integration, its span's scope).
@dataclass(frozen=True)
class Cover:
    """When a span of another scope duplicates ``integration``'s LLM span for one call."""

    integration: Integration
    parent_scope: str | None = None  # it would start directly under that scope's span
    parent_prefix: str = ""  # whose name starts so
    parent_kind: str | None = None  # and whose OpenInference span kind is this
    caller_module: str | None = None  # or it would start inside that library's code
    caller_span: Callable[[FrameType], Span | None] | None = None
    """With ``caller_module``: finds the covering span from that library's frame, when it is
    never the current span (else the duplicate carries the current span's context)."""
    name_suffix: str | None = None
    """Or: a span whose name ends so always steps aside (it records no provider call)."""
    parent_lookup: Callable[[Span], Span | None] | None = None
    """With ``parent_scope``: the live span a remote parent stands for, when the library
    carries the context across in-process (the parent is then a copy that records nothing)."""
    demote_parent: bool = False
    """With ``parent_scope``: the span is the real call and is kept; the parent, which only
    wraps such calls, is marked (``WRAPS_LLM_CALLS``) to be sent as a CHAIN span instead."""


def _langchain_run_span(frame: FrameType | None, depth: int = 32) -> Span | None:
    """The span of the LangChain run a frame up the stack serves: its ``run_manager`` local
    (every chat model's ``_generate``/``_stream`` and their callers take one) names the run."""
    from openinference.instrumentation.langchain import LangChainInstrumentor

    while frame is not None and depth > 0:
        run_id = getattr(frame.f_locals.get("run_manager"), "run_id", None)
        if run_id is not None:
            span: Span | None = LangChainInstrumentor().get_span(run_id)
            return span
        frame, depth = frame.f_back, depth - 1
    return None


def _propagated_span(remote: Span) -> Span | None:
    from traceroot._integrations.adapters import propagated_span

    return propagated_span(remote)


DUPLICATES: dict[str, tuple[Cover, ...]] = {
    # mistralai 2.0-2.4.7 traces every API call on the global provider; later releases do
    # when asked to (MISTRAL_SDK_TELEMETRY=global, Mistral(telemetry="global")).
    "mistralai_sdk_tracer": (Cover(Integration.MISTRAL, parent_scope=f"{OI}.mistralai"),),
    f"{OI}.openai": (
        # litellm reaches OpenAI-compatible providers through the openai client.
        Cover(Integration.LITELLM, parent_scope=f"{OI}.litellm"),
        # So do Pydantic AI's OpenAI models, under their own (reshaped) "chat <model>" span,
        # which carries the model and token counts; a tool's own openai call is not covered.
        Cover(Integration.PYDANTIC_AI, parent_scope="pydantic-ai", parent_prefix="chat "),
        # So does LangChain's ChatOpenAI; LangChain's spans never become the current span,
        # so the openai span would be a sibling of its LLM span, found by the caller instead,
        # and what starts inside it (the HTTP request) goes under LangChain's LLM span.
        Cover(
            Integration.LANGCHAIN, caller_module="langchain_openai", caller_span=_langchain_run_span
        ),
        # So do the OpenAI Agents SDK's models and Agno's OpenAI models, under their own LLM
        # span ("response", "generation"; "OpenAIChat.invoke", ...), which carries the model
        # and token counts, streaming included (the openai client's streamed Responses span
        # has none); a tool's own openai call is not covered.
        Cover(Integration.OPENAI_AGENTS, parent_scope=f"{OI}.openai_agents", parent_kind="LLM"),
        Cover(Integration.AGNO, parent_scope=f"{OI}.agno", parent_kind="LLM"),
        # So do Agent Framework's OpenAI clients, under its "chat <model>" span (reshaped as
        # it ends, so it has no OpenInference kind yet).
        Cover(Integration.AGENT_FRAMEWORK, parent_scope="agent_framework", parent_prefix="chat "),
        # So does LlamaIndex's OpenAI LLM. A streamed call is made while the stream is read,
        # after its LLM span stopped being current: the HTTP request then nests under the
        # step that read it, beside the LLM span.
        Cover(Integration.LLAMA_INDEX, caller_module="llama_index.llms.openai"),
    ),
    # Google ADK's own spans for an invocation and an agent run ("invocation",
    # "invoke_agent <name>") repeat OpenInference's ("invocation [<app>]", "agent_run
    # [<name>]"), whose instrumentor means to silence them but misses the start_span ADK 2
    # makes them with. Under ADK's telemetry schema 2 (its default) each model call's
    # attributes are then recorded on the agent span, marking it LLM beside the google-genai
    # LLM span of each call. They step aside: the calls nest under the agent.
    "gcp.vertex.agent": (
        Cover(Integration.GOOGLE_ADK, parent_scope=f"{OI}.google_adk", parent_prefix="agent_run"),
        Cover(Integration.GOOGLE_ADK, parent_scope=f"{OI}.google_adk", parent_prefix="invocation"),
    ),
    # Under ADK's schema 1 (ADK_TELEMETRY_SCHEMA_VERSION_OPT_IN=1) each model call has
    # ADK's own LLM span ("call_llm", given its kind when the reply is in); the google-genai
    # client's span for the call steps aside.
    f"{OI}.google_genai": (
        Cover(Integration.GOOGLE_ADK, parent_scope="gcp.vertex.agent", parent_prefix="call_llm"),
    ),
    # The mcp library traces each message its servers receive ("tools/call <tool>", and the
    # session's "initialize", "tools/list"...). The Claude Agent SDK runs the user's tools
    # as such a server in-process, answering the CLI under the turn's agent span, whose
    # context our adapter hands the server with each message: each call is already
    # OpenInference's TOOL span there, and the handshakes are the SDK's plumbing. They step
    # aside (what the tool itself traces nests under the agent); an MCP server the program
    # runs itself keeps its spans.
    "mcp-python-sdk": (
        Cover(
            Integration.CLAUDE_AGENT_SDK,
            parent_scope=f"{OI}.claude_agent_sdk",
            parent_kind="AGENT",
            parent_lookup=_propagated_span,
        ),
    ),
    # LiteLLM's `completion` with fallbacks calls `acompletion` once per model it tries, each
    # an LLM span of its own under the first: that one only wraps them, and its token counts
    # (the answer's) would count the call twice. The attempts are kept (each its model, the
    # failed one's error) and the wrapper is sent as a CHAIN span.
    f"{OI}.litellm": (
        Cover(
            Integration.LITELLM,
            parent_scope=f"{OI}.litellm",
            parent_kind="LLM",
            demote_parent=True,
        ),
    ),
    # OpenInference marks every method of a LlamaIndex LLM an LLM span, this one included,
    # though it only builds the request of the call that follows.
    f"{OI}.llama_index": (Cover(Integration.LLAMA_INDEX, name_suffix="._prepare_chat_with_tools"),),
}


def _called_from(module: str, depth: int = 64) -> FrameType | None:
    """The innermost frame of ``module`` (or its submodules) on the calling stack, if any."""
    prefix = module + "."
    frame = compat.caller_frame(2)
    while frame is not None and depth > 0:
        name = frame.f_globals.get("__name__", "")
        if name == module or name.startswith(prefix):
            return frame
        frame, depth = frame.f_back, depth - 1
    return None


def _has_kind(span: Span, kind: str | None) -> bool:
    if kind is None:
        return True
    attributes = getattr(span, "attributes", None) or {}
    found = attributes.get(OI_SPAN_KIND)
    if found is None:
        # OpenInference's span proxy (0.1.72 on) keeps the kind aside, set only as it ends.
        found = (getattr(span, "_self_important_attributes", None) or {}).get(OI_SPAN_KIND)
    return bool(found == kind)


def _caller_span(cover: Cover, frame: FrameType) -> Span | None:
    if cover.caller_span is None:
        return None
    try:
        return cover.caller_span(frame)
    except Exception:  # a library change must not break the call: the current span it is
        return None


def _looked_up(lookup: Callable[[Span], Span | None], parent: Span) -> Span:
    try:
        return lookup(parent) or parent
    except Exception:  # a library change must not break the call: the parent it is
        return parent


class _YieldingTracer(Tracer):
    """A tracer whose span steps aside when it would sit directly under the LLM span of
    the integration that already traces the call (while that integration is active).

    The span is then a non-recording one carrying the LLM span's context, so whatever
    starts inside it (an HTTP client span, a header to propagate) nests under the LLM
    span: nothing is orphaned. Anywhere else the tracer is the one it wraps.
    """

    def __init__(self, inner: Tracer, covers: tuple[Cover, ...]) -> None:
        self._inner = inner
        self._covers = covers

    def __getattr__(self, name: str) -> Any:  # sampler, id_generator, ...: the inner tracer's
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def _covered(self, name: str, context: Context | None) -> Span | None:
        parent = get_current_span(context)
        for cover in self._covers:
            if not _yielding.is_active(cover.integration):
                continue
            if cover.name_suffix is not None:
                if name.endswith(cover.name_suffix):
                    return NonRecordingSpan(parent.get_span_context())
            elif cover.parent_scope is not None:
                if cover.parent_lookup is not None and not parent.is_recording():
                    parent = _looked_up(cover.parent_lookup, parent)
                scope = getattr(parent, "instrumentation_scope", None)
                if (
                    getattr(scope, "name", None) == cover.parent_scope
                    and parent.is_recording()
                    and getattr(parent, "name", "").startswith(cover.parent_prefix)
                    and _has_kind(parent, cover.parent_kind)
                ):
                    if cover.demote_parent:
                        parent.set_attribute(WRAPS_LLM_CALLS, True)
                        continue
                    return NonRecordingSpan(parent.get_span_context())
            elif cover.caller_module is not None:
                frame = _called_from(cover.caller_module)
                if frame is None:
                    continue
                found = _caller_span(cover, frame)
                return NonRecordingSpan((found or parent).get_span_context())
        return None

    def start_span(
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> Span:
        covered = self._covered(name, context)
        if covered is not None:
            return covered
        # The inner tracer's method, run on ``self``: OpenInference's tracer wraps this one
        # and calls it that way on itself, to use its own id generator.
        return compat.start_span_as(self._inner, self, "start_span", name, context, *args, **kwargs)

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> Iterator[Span]:
        covered = self._covered(name, context)
        if covered is None:
            with compat.start_span_as(
                self._inner, self, "start_as_current_span", name, context, *args, **kwargs
            ) as span:
                yield span
        else:
            with use_span(covered, end_on_exit=False):
                yield covered


def yield_duplicates(
    provider: TracerProvider | None, is_active: Callable[[Integration], bool] = lambda _: False
) -> None:
    """Give ``provider`` (None: no provider) yielding tracers for the DUPLICATES scopes.

    Installed before anything is instrumented, as tracers are taken at instrument time.
    """
    current = _yielding.provider
    if current is provider:
        return
    if current is not None and vars(current).get("get_tracer") is _yielding.hook:
        del current.get_tracer
    _yielding.provider = _yielding.hook = None
    if provider is None:
        return
    _yielding.is_active = is_active
    original = provider.get_tracer

    def get_tracer(name: str, *args: Any, **kwargs: Any) -> Tracer:
        tracer = original(name, *args, **kwargs)
        covers = DUPLICATES.get(name)
        return tracer if covers is None else _YieldingTracer(tracer, covers)

    setattr(provider, "get_tracer", get_tracer)  # noqa: B010  (this instance only)
    _yielding.provider, _yielding.hook = provider, get_tracer

"""Libraries traceroot can instrument, and the registry that instruments them on import.

Nothing here imports an instrumented library. Each requested integration gets an
import hook; the library is instrumented the moment its module finishes executing
(or at once when it is already imported), so a program pays only for what it uses.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Union

from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    Tracer,
    TracerProvider,
    get_current_span,
    use_span,
)

from traceroot import _distributions as distributions
from traceroot import _import_hooks as import_hooks

if TYPE_CHECKING:
    import importlib.metadata

logger = logging.getLogger("traceroot")

# Ours at start-up; importlib's when opentelemetry-instrument hands one to the distro.
AnyEntryPoint = Union[distributions.EntryPoint, "importlib.metadata.EntryPoint"]


class Integration(str, Enum):
    """A library to instrument; values match the reference TraceRoot SDK's."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    LANGCHAIN = "langchain"
    GOOGLE_GENAI = "google_genai"
    CREWAI = "crewai"
    OPENAI_AGENTS = "openai_agents"
    CLAUDE_AGENT_SDK = "claude_agent_sdk"
    LLAMA_INDEX = "llama_index"
    AUTOGEN = "autogen"
    AGNO = "agno"
    GROQ = "groq"
    DSPY = "dspy"
    GOOGLE_ADK = "google_adk"
    MISTRAL = "mistral"
    PYDANTIC_AI = "pydantic_ai"
    BEDROCK = "bedrock"
    AGENT_FRAMEWORK = "agent_framework"
    LITELLM = "litellm"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class _Spec:
    """How one integration is detected, hooked and instrumented."""

    dists: tuple[str, ...]
    """Distributions providing the library; any one installed counts."""
    module: str
    """The module whose import triggers instrumentation."""
    instrumentor_dist: str
    """The distribution that carries the instrumentor."""
    instrumentor: str
    """``module:Class`` of an object with ``instrument(tracer_provider=...)``/``uninstrument()``."""
    extra: str | None = None
    """``traceroot[extra]`` that installs the instrumentor; None when it is a core dependency."""


_OI = "openinference.instrumentation"

# The one registry. The first four are core dependencies; the rest are extras of the same name.
REGISTRY: dict[Integration, _Spec] = {
    Integration.OPENAI: _Spec(
        ("openai",),
        "openai",
        "openinference-instrumentation-openai",
        f"{_OI}.openai:OpenAIInstrumentor",
    ),
    Integration.ANTHROPIC: _Spec(
        ("anthropic",),
        "anthropic",
        "openinference-instrumentation-anthropic",
        "traceroot._integrations:_AnthropicInstrumentor",
    ),
    # Keyed on langchain-core, which the instrumentor patches, so LangGraph-only apps count.
    Integration.LANGCHAIN: _Spec(
        ("langchain-core",),
        "langchain_core",
        "openinference-instrumentation-langchain",
        f"{_OI}.langchain:LangChainInstrumentor",
    ),
    Integration.GOOGLE_GENAI: _Spec(
        ("google-genai",),
        "google.genai",
        "openinference-instrumentation-google-genai",
        f"{_OI}.google_genai:GoogleGenAIInstrumentor",
    ),
    Integration.CREWAI: _Spec(
        ("crewai",),
        "crewai",
        "openinference-instrumentation-crewai",
        f"{_OI}.crewai:CrewAIInstrumentor",
        "crewai",
    ),
    Integration.OPENAI_AGENTS: _Spec(
        ("openai-agents",),
        "agents",
        "openinference-instrumentation-openai-agents",
        f"{_OI}.openai_agents:OpenAIAgentsInstrumentor",
        "openai-agents",
    ),
    Integration.CLAUDE_AGENT_SDK: _Spec(
        ("claude-agent-sdk",),
        "claude_agent_sdk",
        "openinference-instrumentation-claude-agent-sdk",
        f"{_OI}.claude_agent_sdk:ClaudeAgentSDKInstrumentor",
        "claude-agent-sdk",
    ),
    Integration.LLAMA_INDEX: _Spec(
        ("llama-index-core",),
        "llama_index.core",
        "openinference-instrumentation-llama-index",
        f"{_OI}.llama_index:LlamaIndexInstrumentor",
        "llama-index",
    ),
    # AG2 is imported as `autogen`; pyautogen is the same project under its old name.
    Integration.AUTOGEN: _Spec(
        ("ag2", "pyautogen"),
        "autogen",
        "openinference-instrumentation-ag2",
        f"{_OI}.ag2:AG2Instrumentor",
        "autogen",
    ),
    Integration.AGNO: _Spec(
        ("agno",),
        "agno",
        "openinference-instrumentation-agno",
        f"{_OI}.agno:AgnoInstrumentor",
        "agno",
    ),
    Integration.GROQ: _Spec(
        ("groq",),
        "groq",
        "openinference-instrumentation-groq",
        f"{_OI}.groq:GroqInstrumentor",
        "groq",
    ),
    Integration.DSPY: _Spec(
        ("dspy", "dspy-ai"),
        "dspy",
        "openinference-instrumentation-dspy",
        f"{_OI}.dspy:DSPyInstrumentor",
        "dspy",
    ),
    Integration.GOOGLE_ADK: _Spec(
        ("google-adk",),
        "google.adk",
        "openinference-instrumentation-google-adk",
        f"{_OI}.google_adk:GoogleADKInstrumentor",
        "google-adk",
    ),
    # mistralai 2+ is a namespace package (no loader to hook); its client package is not.
    Integration.MISTRAL: _Spec(
        ("mistralai",),
        "mistralai.client",
        "openinference-instrumentation-mistralai",
        f"{_OI}.mistralai:MistralAIInstrumentor",
        "mistral",
    ),
    # Pydantic AI and Agent Framework emit spans natively; OpenInference ships span
    # processors that reshape them, which the adapters below install.
    Integration.PYDANTIC_AI: _Spec(
        ("pydantic-ai", "pydantic-ai-slim"),
        "pydantic_ai",
        "openinference-instrumentation-pydantic-ai",
        "traceroot._integrations:_PydanticAIInstrumentor",
        "pydantic-ai",
    ),
    Integration.BEDROCK: _Spec(
        ("boto3",),
        "boto3",
        "openinference-instrumentation-bedrock",
        f"{_OI}.bedrock:BedrockInstrumentor",
        "bedrock",
    ),
    Integration.AGENT_FRAMEWORK: _Spec(
        ("agent-framework-core",),
        "agent_framework",
        "openinference-instrumentation-agent-framework",
        "traceroot._integrations:_AgentFrameworkInstrumentor",
        "agent-framework",
    ),
    Integration.LITELLM: _Spec(
        ("litellm",),
        "litellm",
        "openinference-instrumentation-litellm",
        f"{_OI}.litellm:LiteLLMInstrumentor",
        "litellm",
    ),
}

_ENV_INTEGRATIONS = "TRACEROOT_INTEGRATIONS"
_ENV_OTEL_INSTRUMENTORS = "TRACEROOT_OTEL_INSTRUMENTORS"
_OTEL_ENTRY_POINT_GROUP = "opentelemetry_instrumentor"


# -- adapters for integrations that are not a plain OpenInference instrumentor ----------


class _AnthropicInstrumentor:
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


def _add_span_processor(tracer_provider: TracerProvider, processor: Any) -> None:
    add = getattr(tracer_provider, "add_span_processor", None)
    if add is None:
        raise TypeError(f"{type(tracer_provider).__name__} cannot take span processors")
    add(processor)


class _PydanticAIInstrumentor:
    """Turns on Pydantic AI's native spans and reshapes them into OpenInference ones."""

    def instrument(self, tracer_provider: TracerProvider) -> None:
        from openinference.instrumentation.pydantic_ai import OpenInferenceSpanProcessor
        from pydantic_ai import Agent, InstrumentationSettings

        _add_span_processor(tracer_provider, OpenInferenceSpanProcessor())
        Agent.instrument_all(InstrumentationSettings(tracer_provider=tracer_provider))

    def uninstrument(self) -> None:
        from pydantic_ai import Agent

        Agent.instrument_all(False)


class _AgentFrameworkInstrumentor:
    """Turns on Agent Framework's native spans and reshapes them into OpenInference ones."""

    def instrument(self, tracer_provider: TracerProvider) -> None:
        from agent_framework.observability import enable_instrumentation
        from openinference.instrumentation.agent_framework import (
            AgentFrameworkToOpenInferenceProcessor,
        )

        _add_span_processor(tracer_provider, AgentFrameworkToOpenInferenceProcessor())
        enable_instrumentation()

    def uninstrument(self) -> None:
        """Agent Framework has no switch back off; its spans stay OpenInference-shaped."""


# -- one LLM call, one LLM span ----------------------------------------------------------


# Tracers whose spans repeat, for the same call, an LLM span one of our integrations
# already makes: tracer (instrumentation scope) name -> (that integration, its span's scope).
@dataclass(frozen=True)
class _Cover:
    """When a span of another scope duplicates ``integration``'s LLM span for one call."""

    integration: Integration
    parent_scope: str | None = None  # it would start directly under that scope's span
    caller_module: str | None = None  # or it would start inside that library's code


_DUPLICATES: dict[str, tuple[_Cover, ...]] = {
    # mistralai 2.0-2.4.7 traces every API call on the global provider; later releases do
    # when asked to (MISTRAL_SDK_TELEMETRY=global, Mistral(telemetry="global")).
    "mistralai_sdk_tracer": (_Cover(Integration.MISTRAL, parent_scope=f"{_OI}.mistralai"),),
    f"{_OI}.openai": (
        # litellm reaches OpenAI-compatible providers through the openai client.
        _Cover(Integration.LITELLM, parent_scope=f"{_OI}.litellm"),
        # So does LangChain's ChatOpenAI; LangChain's spans never become the current span,
        # so the openai span would be a sibling of its LLM span, found by the caller instead.
        _Cover(Integration.LANGCHAIN, caller_module="langchain_openai"),
    ),
}


def _called_from(module: str, depth: int = 64) -> bool:
    """Whether code of ``module`` (or its submodules) is on the calling stack."""
    prefix = module + "."
    frame = sys._getframe(2)
    while frame is not None and depth > 0:
        name = frame.f_globals.get("__name__", "")
        if name == module or name.startswith(prefix):
            return True
        frame, depth = frame.f_back, depth - 1  # type: ignore[assignment]
    return False


class _YieldingTracer(Tracer):
    """A tracer whose span steps aside when it would sit directly under the LLM span of
    the integration that already traces the call (while that integration is active).

    The span is then a non-recording one carrying the LLM span's context, so whatever
    starts inside it (an HTTP client span, a header to propagate) nests under the LLM
    span: nothing is orphaned. Anywhere else the tracer is the one it wraps.
    """

    def __init__(self, inner: Tracer, covers: tuple[_Cover, ...]) -> None:
        self._inner = inner
        self._covers = covers

    def __getattr__(self, name: str) -> Any:  # sampler, id_generator, ...: the inner tracer's
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def _covered(self, context: Context | None) -> Span | None:
        parent = get_current_span(context)
        for cover in self._covers:
            if cover.integration not in _state.instrumented:
                continue
            if cover.parent_scope is not None:
                scope = getattr(parent, "instrumentation_scope", None)
                if getattr(scope, "name", None) == cover.parent_scope and parent.is_recording():
                    return NonRecordingSpan(parent.get_span_context())
            elif cover.caller_module is not None and _called_from(cover.caller_module):
                return NonRecordingSpan(parent.get_span_context())
        return None

    def start_span(
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> Span:
        covered = self._covered(context)
        if covered is not None:
            return covered
        # The inner tracer's method, run on ``self``: OpenInference's tracer wraps this one
        # and calls it that way on itself, to use its own id generator.
        return type(self._inner).start_span(self, name, context, *args, **kwargs)

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> Iterator[Span]:
        covered = self._covered(context)
        if covered is None:
            inner = type(self._inner).start_as_current_span
            with inner(self, name, context, *args, **kwargs) as span:
                yield span
        else:
            with use_span(covered, end_on_exit=False):
                yield covered


def _yield_duplicates(provider: TracerProvider | None) -> None:
    """Give ``provider`` (None: no provider) yielding tracers for the _DUPLICATES scopes.

    Installed before anything is instrumented, as tracers are taken at instrument time.
    """
    current = _state.yielding
    if current is provider:
        return
    if current is not None and vars(current).get("get_tracer") is _state.yielding_hook:
        del current.get_tracer
    _state.yielding = _state.yielding_hook = None
    if provider is None:
        return
    original = provider.get_tracer

    def get_tracer(name: str, *args: Any, **kwargs: Any) -> Tracer:
        tracer = original(name, *args, **kwargs)
        covers = _DUPLICATES.get(name)
        return tracer if covers is None else _YieldingTracer(tracer, covers)

    setattr(provider, "get_tracer", get_tracer)  # noqa: B010  (this instance only)
    _state.yielding, _state.yielding_hook = provider, get_tracer


def _load_object(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


# -- state ------------------------------------------------------------------------------


class _State:
    """What has been requested, hooked and instrumented in this process."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.provider: TracerProvider | None = None
        self.explicit = False
        self.hooks: dict[Integration, Callable[[], None]] = {}
        self.instrumented: dict[Integration, Any] = {}
        self.in_progress: set[Integration] = set()
        self.failed: dict[Integration, str] = {}
        self.otel_seen: set[str] = set()
        self.otel_hooks: list[tuple[str, Callable[[], None]]] = []
        self.otel_instrumented: list[Any] = []
        self.yielding: TracerProvider | None = None
        self.yielding_hook: Callable[..., Tracer] | None = None


_state = _State()


def _pip_hint(integration: Integration) -> str:
    spec = REGISTRY[integration]
    if spec.extra is not None:
        return f"pip install 'traceroot[{spec.extra}]'"
    return f"pip install {spec.instrumentor_dist}"


def _parse(
    requested: Sequence[Integration | str] | str | None, source: str
) -> list[Integration] | None:
    """The integrations ``requested`` names; None for "every one installed"."""
    if requested is None:
        return None
    if isinstance(requested, str):
        text = requested.strip().lower()
        if text in ("", "auto", "all"):
            return None
        if text == "none":
            return []
        names: Iterable[Integration | str] = text.split(",")
    else:
        names = requested
    chosen: list[Integration] = []
    for name in names:
        if isinstance(name, Integration):
            chosen.append(name)
            continue
        key = str(name).strip().lower().replace("-", "_")
        if not key:
            continue
        try:
            chosen.append(Integration(key))
        except ValueError:
            valid = ", ".join(member.value for member in Integration)
            logger.warning(
                "traceroot: unknown integration %r in %s; valid values: %s, all, none",
                str(name).strip(),
                source,
                valid,
            )
    return list(dict.fromkeys(chosen))


def activate(
    requested: Sequence[Integration | str] | str | None,
    tracer_provider: TracerProvider,
    *,
    explicit: bool,
) -> None:
    """Instrument the requested integrations on import, with ``tracer_provider``.

    ``explicit=True``: ``requested`` is the user's ``initialize(integrations=...)`` list
    (None does nothing); it replaces hooks left by an earlier automatic activation.
    ``explicit=False``: ``requested`` is ``TRACEROOT_INTEGRATIONS`` ("a,b", "all", "none")
    or None for every integration whose library is installed; ignored after an explicit
    activation. Never raises; problems are logged on the ``traceroot`` logger.
    """
    try:
        _activate(requested, tracer_provider, explicit=explicit)
    except Exception:
        logger.warning("traceroot: could not activate integrations", exc_info=True)


def _activate(
    requested: Sequence[Integration | str] | str | None,
    tracer_provider: TracerProvider,
    *,
    explicit: bool,
) -> None:
    source = "initialize(integrations=...)" if explicit else _ENV_INTEGRATIONS
    chosen = _parse(requested, source)
    if explicit and chosen is None:
        return
    with _state.lock:
        if not explicit and _state.explicit:
            logger.debug(
                "traceroot: integrations already chosen by initialize(); %s ignored",
                _ENV_INTEGRATIONS,
            )
            return
        previous, _state.provider = _state.provider, tracer_provider
        if explicit and not _state.explicit:
            _state.explicit = True
            for integration in [i for i in _state.hooks if i not in (chosen or [])]:
                _withdraw_hook(integration)
        named = chosen is not None
        ready = [
            integration
            for integration in (chosen if chosen is not None else list(Integration))
            if _request(integration, named=named)
        ]
        active = {*ready, *_state.hooks, *_state.instrumented}
        if any(c.integration in active for covers in _DUPLICATES.values() for c in covers):
            _yield_duplicates(tracer_provider)
    # Instrumenting imports modules, so it happens without the lock: another thread may be
    # inside an import, waiting for the lock in its hook.
    if previous is not None and previous is not tracer_provider:
        _rebind(tracer_provider)
    for integration in ready:
        _instrument(integration)


def _rebind(tracer_provider: TracerProvider) -> None:
    """Point everything already instrumented at a new provider (after a re-initialize)."""
    for integration, instrumentor in list(_state.instrumented.items()):
        try:
            instrumentor.uninstrument()
            instrumentor.instrument(tracer_provider=tracer_provider)
        except Exception as exc:
            with _state.lock:
                _state.instrumented.pop(integration, None)
            _fail(integration, exc)


def _request(integration: Integration, *, named: bool) -> bool:
    """Hook ``integration``; True when its library is already imported, to instrument now."""
    spec = REGISTRY[integration]
    if integration in _state.instrumented or integration in _state.hooks:
        return False
    if not any(distributions.installed(dist) for dist in spec.dists):
        log = logger.warning if named else logger.debug
        log(
            "traceroot: skipping the %s integration: %s is not installed",
            integration.value,
            " or ".join(spec.dists),
        )
        return False
    if import_hooks.imported(spec.module):
        return True

    def hook() -> None:
        with _state.lock:
            if _state.hooks.get(integration) is not hook:
                return
            del _state.hooks[integration]
        _instrument(integration)

    _state.hooks[integration] = hook
    import_hooks.when_imported(spec.module, hook)
    return False


def _withdraw_hook(integration: Integration) -> None:
    hook = _state.hooks.pop(integration, None)
    if hook is not None:
        import_hooks.forget(REGISTRY[integration].module, hook)


def _instrument(integration: Integration) -> None:
    """Instrument ``integration`` once; its library has just been imported."""
    spec = REGISTRY[integration]
    with _state.lock:
        if integration in _state.instrumented or integration in _state.in_progress:
            return
        _state.in_progress.add(integration)
        provider = _state.provider
    # The lock is not held while instrumenting: that imports modules, and another
    # thread may be inside an import waiting for the lock in its hook.
    try:
        if not distributions.installed(spec.instrumentor_dist):
            logger.warning(
                "traceroot: cannot trace %s: the instrumentor %s is not installed; run: %s",
                integration.value,
                spec.instrumentor_dist,
                _pip_hint(integration),
            )
            return
        instrumentor = _load_object(spec.instrumentor)()
        instrumentor.instrument(tracer_provider=provider)
        # BaseInstrumentor declines, with its own log line, on a library version conflict.
        if not getattr(instrumentor, "is_instrumented_by_opentelemetry", True):
            with _state.lock:
                _state.failed[integration] = "failed: DependencyConflict"
            return
        with _state.lock:
            _state.instrumented[integration] = instrumentor
            _state.failed.pop(integration, None)
        logger.debug("traceroot: instrumented %s", integration.value)
    except Exception as exc:
        _fail(integration, exc)
    finally:
        with _state.lock:
            _state.in_progress.discard(integration)


def _fail(integration: Integration, exc: BaseException) -> None:
    with _state.lock:
        _state.failed[integration] = f"failed: {type(exc).__name__}"
    logger.warning(
        "traceroot: instrumenting %s failed; other integrations are unaffected",
        integration.value,
        exc_info=exc,
    )


def status() -> dict[Integration, str]:
    """Each integration's state, for ``traceroot-run --check``.

    One of "instrumented", "waiting for import", "not requested", "library not installed",
    "instrumentor missing (pip install ...)" or "failed: <ExcType>".
    """
    result: dict[Integration, str] = {}
    with _state.lock:
        for integration, spec in REGISTRY.items():
            if integration in _state.instrumented:
                result[integration] = "instrumented"
            elif integration in _state.failed:
                result[integration] = _state.failed[integration]
            elif not any(distributions.installed(dist) for dist in spec.dists):
                result[integration] = "library not installed"
            elif not distributions.installed(spec.instrumentor_dist):
                result[integration] = f"instrumentor missing ({_pip_hint(integration)})"
            elif integration in _state.hooks:
                result[integration] = "waiting for import"
            else:
                result[integration] = "not requested"
    return result


def deactivate() -> None:
    """Uninstrument everything instrumented here and remove every pending import hook."""
    with _state.lock:
        for integration in list(_state.hooks):
            _withdraw_hook(integration)
        for module, hook in _state.otel_hooks:
            import_hooks.forget(module, hook)
        instrumentors = [*_state.instrumented.values(), *_state.otel_instrumented]
        _state.instrumented.clear()
        _state.otel_hooks.clear()
        _state.otel_instrumented.clear()
        _state.otel_seen.clear()
        _state.failed.clear()
        _state.provider = None
        _state.explicit = False
        _yield_duplicates(None)
    for instrumentor in instrumentors:
        try:
            instrumentor.uninstrument()
        except Exception:
            logger.debug("traceroot: uninstrumenting %r failed", instrumentor, exc_info=True)


# -- standard OpenTelemetry instrumentors ------------------------------------------------


def _enabled(variable: str) -> bool:
    return os.environ.get(variable, "true").strip().lower() not in ("false", "0", "no", "off")


def activate_otel_instrumentors(tracer_provider: TracerProvider) -> None:
    """Activate installed ``opentelemetry_instrumentor`` entry points, each on import.

    For the launcher path. Skipped when ``TRACEROOT_OTEL_INSTRUMENTORS`` is false; honours
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``. Never raises.
    """
    if not _enabled(_ENV_OTEL_INSTRUMENTORS):
        return
    disabled = {
        name.strip()
        for name in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")
    }
    if "*" in disabled:
        return
    try:
        entry_points = distributions.entry_points(_OTEL_ENTRY_POINT_GROUP)
    except Exception:
        logger.warning("traceroot: could not list OpenTelemetry instrumentors", exc_info=True)
        return
    for entry_point in entry_points:
        if entry_point.name not in disabled:
            activate_otel_entry_point(entry_point, tracer_provider)


def _covered_by_registry(entry_point: AnyEntryPoint, libraries: set[str]) -> bool:
    """Whether an LLM integration of ours already traces what this entry point would."""
    if entry_point.value.startswith(_OI + "."):
        return True
    ours = {distributions.normalize(dist) for spec in REGISTRY.values() for dist in spec.dists}
    ours |= {distributions.normalize(member.value) for member in Integration}
    return distributions.normalize(entry_point.name) in ours or bool(libraries & ours)


def activate_otel_entry_point(
    entry_point: AnyEntryPoint,
    tracer_provider: TracerProvider,
    **kwargs: Any,
) -> None:
    """Instrument one OpenTelemetry instrumentor entry point when its library is imported.

    Entry points for libraries an LLM integration covers are skipped (they would make a
    second span per call), as are ones already handled. Never raises.
    """
    try:
        libraries = _instrumented_libraries(entry_point)
        with _state.lock:
            if entry_point.name in _state.otel_seen:
                return
            _state.otel_seen.add(entry_point.name)
        if _covered_by_registry(entry_point, set(libraries)):
            logger.debug("traceroot: %s left to the LLM integrations", entry_point.value)
            return
        modules = [
            m for lib in libraries if distributions.installed(lib) for m in _top_level_modules(lib)
        ]
        if libraries and not modules:
            logger.debug("traceroot: %s skipped: its library is not installed", entry_point.name)
            return
        done = threading.Event()

        def hook() -> None:
            if done.is_set():
                return
            done.set()
            instrumentor = entry_point.load()()
            instrumentor.instrument(tracer_provider=tracer_provider, **kwargs)
            with _state.lock:
                _state.otel_instrumented.append(instrumentor)
                for module, other in [h for h in _state.otel_hooks if h[1] is hook]:
                    import_hooks.forget(module, other)

        if not modules:  # the standard library or an unknown target: nothing to wait for
            hook()
            return
        for module in modules:
            with _state.lock:
                _state.otel_hooks.append((module, hook))
            import_hooks.when_imported(module, hook)
    except Exception:
        logger.warning(
            "traceroot: OpenTelemetry instrumentor %s failed", entry_point.name, exc_info=True
        )


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^;]*;(.*)$")
_INSTRUMENTS_EXTRA = re.compile(r"""extra\s*==\s*["']instruments(-any)?["']""")


def _instrumented_libraries(entry_point: AnyEntryPoint) -> list[str]:
    """Distributions the entry point's package instruments, from its ``instruments`` extras.

    A regular expression rather than ``packaging``: this runs at every process start, and
    only the name and the extra marker of each line matter.
    """
    dist = entry_point.dist
    if dist is None:
        return []
    libraries: list[str] = []
    for line in dist.requires or []:
        match = _REQUIREMENT.match(line)
        if match is not None and _INSTRUMENTS_EXTRA.search(match.group(2)):
            libraries.append(match.group(1))
    return libraries


def _top_level_modules(dist_name: str) -> list[str]:
    """Top-level import names a distribution provides, read from its metadata only."""
    dist = distributions.find(dist_name)
    return dist.top_level_modules() if dist is not None else []

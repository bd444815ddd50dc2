"""The client once tracing has started: the tracer provider, our processor on it, and its
lifecycle. Loading this module loads the OpenTelemetry SDK and our export pipeline, so
`traceroot._client` imports it only when the process starts tracing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    ReadableSpan,
    Span,
    SpanLimits,
    SpanProcessor,
    Tracer,
    TracerProvider,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from traceroot import _attributes as attr
from traceroot import _compat as compat
from traceroot import _git as git
from traceroot import _integrations as integrations
from traceroot import _run_parents as run_parents
from traceroot import _sampling as sampling
from traceroot import _threads as threads
from traceroot._config import Config, QuietResourceWarnings, sdk_disabled_problem
from traceroot._errors import in_words
from traceroot._export import ExportPipeline, Redact
from traceroot._light_span import LightSpan, LightTracer, valid_value
from traceroot._sampling import RateSampler
from traceroot._stamping import Path, Stamper
from traceroot.version import SDK_NAME, __version__

logger = logging.getLogger("traceroot")

Mode = Literal["explicit", "auto", "lazy"]


class _SwitchableProcessor(SpanProcessor):
    """The one processor we add to a provider; a later `initialize()` swaps what it runs."""

    def __init__(self, stamping: Stamper, pipeline: ExportPipeline) -> None:
        self.stamping = stamping
        self.pipeline = pipeline

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        try:
            self.stamping.on_start(span, parent_context)
        except Exception as exc:
            logger.debug("traceroot: stamping a span failed: %r", exc)

    def on_end(self, span: ReadableSpan) -> None:
        self.pipeline.on_end(span, self.stamping.on_end(span))

    def shutdown(self) -> None:
        self.pipeline.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.pipeline.force_flush(timeout_millis)


class _LightingTracer(Tracer):
    """An SDK tracer whose spans are light ones while light spans are on (see `_start`).

    Instrumented libraries (FastAPI, OpenInference, LangChain...) take their tracers from
    our provider: their spans then cost what `@observe`'s do, stamped here as our processor
    would stamp them. When light spans are off (another processor, another sampler), or if
    anything goes wrong here, the SDK tracer it wraps makes the span. Everything else is
    that tracer's: attributes are read from it, and its own methods run on this one (or on
    a tracer wrapping this one, as OpenInference's does), calling this `start_span`.
    """

    def __init__(
        self, sdk: Tracer, scope: InstrumentationScope, light_for: Callable[..., Any]
    ) -> None:  # the SDK's __init__ is not run: its state is the wrapped tracer's
        self._sdk_tracer = sdk
        self._light_scope = scope
        self._light_for = light_for

    def __getattr__(self, name: str) -> Any:  # sampler, resource, id_generator, ...
        if name == "_sdk_tracer":
            raise AttributeError(name)
        return getattr(self._sdk_tracer, name)

    def start_span(  # type: ignore[override]
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        found = self._light_for(self._light_scope, self.id_generator)
        # A span given its own path is stamped already (ours, through the SDK): as it is.
        if found is not None and not (attributes and attr.SPAN_PATH in attributes):
            light, stamping = found
            try:
                return _light_span(
                    light, stamping, name, context, kind, attributes, links, start_time
                )
            except Exception as exc:  # never break the program: the SDK's span instead
                logger.debug("traceroot: a light span failed, an SDK span instead: %r", exc)
        # The SDK's own method, on whichever tracer this runs as (OpenInference's runs it
        # on itself, with its own id generator): it reads the SDK tracer's internals.
        return compat.start_span_as(
            self._sdk_tracer, self, "start_span", name, context, kind, attributes, links,
            start_time, record_exception, set_status_on_exception,
        )  # fmt: skip


def _light_span(
    light: LightTracer,
    stamping: Stamper,
    name: str,
    context: context_api.Context | None,
    kind: trace.SpanKind,
    attributes: Any,
    links: Sequence[trace.Link] | None,
    start_time: int | None,
) -> trace.Span:
    """A library's span as a light one: its attributes checked as the SDK checks them, then
    stamped (as `Stamper.on_start` stamps an SDK span, which moves a stamped key last)."""
    parent_context = run_parents.current_context() if context is None else context
    parent = trace.get_current_span(parent_context)
    stamped, path = stamping.stamp(name, parent_context, parent)
    values: dict[str, Any] = {}
    if attributes:
        for key, value in attributes.items():
            if value is None:
                continue  # the SDK drops it silently
            cleaned = valid_value(key, value)
            if cleaned is not None and key not in stamped:  # a stamped key is set below
                values[key] = cleaned
    values.update(stamped)
    span = light.start_span(name, values, parent.get_span_context(), kind, start_time)
    if type(span) is LightSpan:
        stamping.remember(span.get_span_context().span_id, path)
        for link in links or ():
            span.add_link(link.context, link.attributes)
    return span


class _OwnProvider(TracerProvider):
    """The provider we install; it notices when anyone else adds a processor to it, and
    gives light tracers (`_LightingTracer`)."""

    def __init__(
        self,
        resource: Resource,
        ours: SpanProcessor,
        on_foreign_processor: Callable[[], None],
        sampler: Sampler | None = None,
        light_for: Callable[..., Any] | None = None,
    ) -> None:
        # The limits are read from the OTEL_*_LIMIT variables once, here, for SDK and
        # light spans alike.
        self.span_limits = SpanLimits()
        super().__init__(
            resource=resource,
            shutdown_on_exit=False,
            span_limits=self.span_limits,
            sampler=sampler,
        )
        self._ours = ours
        self._on_foreign_processor = on_foreign_processor
        self._light_for = light_for

    def get_tracer(  # type: ignore[override]
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        tracer = super().get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )
        if self._light_for is None or type(tracer) is not Tracer:
            return tracer  # a no-op one (the SDK is disabled), or a subclass of someone's
        scope = InstrumentationScope(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )
        return _LightingTracer(tracer, scope, self._light_for)

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        if span_processor is not self._ours:
            self._on_foreign_processor()


class TraceRootClient:
    """Holds the configuration and the tracing pipeline of this process."""

    def __init__(self, config: Config, redact: Redact | None = None, mode: Mode = "explicit"):
        self.config = config
        self.mode: Mode = mode
        self.redact = redact
        self.git = git.GitContext()
        self.tracer: trace.Tracer = trace.NoOpTracer()
        self._processor: _SwitchableProcessor | None = None
        self._provider: TracerProvider | None = None
        self._light: LightTracer | None = None
        # Libraries' light tracers, by scope, with the decorator's light tracer they follow.
        self._light_scopes: dict[tuple[Any, ...], tuple[LightTracer, LightTracer]] = {}
        self._closed = False
        if config.enabled:
            self._start()

    def __repr__(self) -> str:
        return f"TraceRootClient(mode={self.mode!r}, {self.config!r})"

    @property
    def enabled(self) -> bool:
        """Whether spans are being recorded."""
        return self.config.enabled and not self._closed

    @property
    def tracer_provider(self) -> TracerProvider | None:
        """The OpenTelemetry provider our processor sits on (ours or one already installed)."""
        return self._provider

    # What the reference client (traceroot 0.5.0) exposes, read from the configuration.

    @property
    def span_processor(self) -> SpanProcessor | None:
        """The processor every span of ours goes through (None when tracing is off)."""
        return self._processor

    @property
    def api_key(self) -> str | None:
        """The API key in use (`repr` of the client and its config mask it)."""
        return self.config.api_key

    @property
    def host_url(self) -> str:
        """TRACEROOT_HOST_URL, resolved."""
        return self.config.host_url

    @property
    def batch_size(self) -> int:
        """Spans that start an export (TRACEROOT_FLUSH_AT, `initialize(batch_size=...)`)."""
        return self.config.flush_at

    @property
    def flush_interval(self) -> float:
        """Seconds between exports."""
        return self.config.flush_interval

    @property
    def timeout(self) -> float:
        """Seconds one export may take."""
        return self.config.timeout

    @property
    def git_repo(self) -> str | None:
        """The repository stamped on spans, as configured (detected ones are in `git`)."""
        return self.config.git_repo

    @property
    def git_ref(self) -> str | None:
        """The commit stamped on spans, as configured (detected ones are in `git`)."""
        return self.config.git_ref

    def _start(self) -> None:
        problem = sdk_disabled_problem()
        if problem is not None and not self.config.shown_before:
            logger.warning("traceroot: %s", problem)
        self.git = git.detect(self.config.git_repo, self.config.git_ref)
        threads.install()  # work handed to other threads nests under the span that handed it
        stamping, pipeline = self._build_processors()
        self._processor = _SwitchableProcessor(stamping, pipeline)
        existing = trace.get_tracer_provider()
        if isinstance(existing, TracerProvider):
            provider = existing  # join it: the app's own exporters keep working
        else:
            provider = _OwnProvider(
                self._resource(),
                self._processor,
                self._stop_light_spans,
                sampling.sampler_for(
                    self.config.sample_rate, self.config.sampler, self.config.sampler_arg
                ),
                self._light_for,
            )
            trace.set_tracer_provider(provider)
            # A program that sets up its own provider after ours (under traceroot-run, or
            # after initialize()) would be refused by OpenTelemetry: its exporters join ours.
            compat.intercept_set_provider(self._join_program_provider)
        provider.add_span_processor(self._processor)
        self._provider = provider
        self.tracer = provider.get_tracer(attr.DECORATOR_SCOPE, __version__)
        # Light spans only where they change nothing: our provider, our processor alone on
        # it and its default sampler (anything else gets the SDK's spans). They apply the
        # same span limits the provider's SDK spans get.
        if (
            isinstance(provider, _OwnProvider)
            and isinstance(self.tracer, Tracer)
            and (provider.sampler is DEFAULT_ON or isinstance(provider.sampler, RateSampler))
        ):
            self._light = LightTracer(
                provider.resource,
                InstrumentationScope(attr.DECORATOR_SCOPE, __version__),
                provider.id_generator,
                self._processor.on_end,
                provider.span_limits,
                sample_bound=(
                    provider.sampler.bound if isinstance(provider.sampler, RateSampler) else None
                ),
            )
        self._announce()

    def _join_program_provider(self, theirs: Any) -> bool:
        """The program sets its own provider while ours is the global one: its processors
        (its exporters) then see every span ours makes; True when they were joined.

        Ours stays the global provider: tracers handed out already (instrumented libraries,
        `@observe`) are ours. Spans made through the program's provider object directly
        stay its own, as it set them up."""
        ours = self._provider
        if (
            theirs is ours
            or not isinstance(theirs, TracerProvider)
            or not isinstance(ours, _OwnProvider)
            or self._closed
            or trace.get_tracer_provider() is not ours
        ):
            return False
        processor = compat.span_processor_of(theirs)
        if processor is None:
            logger.warning(
                "traceroot: the program sets its own TracerProvider, but traceroot's was "
                "installed first, and this OpenTelemetry SDK gives no way to join them: the "
                "program's exporters get no spans. Configure its exporters before traceroot "
                "starts (call traceroot.initialize() after setting the provider)."
            )
            return False
        ours.add_span_processor(processor)
        logger.debug("traceroot: the program's own TracerProvider joined ours")
        return True

    def _stop_light_spans(self) -> None:
        self._light = None  # another processor must see every span: SDK spans from now on

    def _light_for(
        self, scope: InstrumentationScope, ids: IdGenerator
    ) -> tuple[LightTracer, Stamper] | None:
        """The light tracer for a library's `scope` (and its tracer's id generator) and the
        stamper, while light spans are on."""
        light, processor = self._light, self._processor
        if light is None or processor is None or self._closed:
            return None
        key = (scope.name, scope.version, scope.schema_url, id(ids))
        tracers = self._light_scopes
        found = tracers.get(key)
        if found is None or found[0] is not light:
            if len(tracers) >= 1024:  # tracers made per call: nothing worth keeping
                tracers.clear()
            found = tracers[key] = (light, light.sibling(scope, ids))
        return found[1], processor.stamping

    def _build_processors(self) -> tuple[Stamper, ExportPipeline]:
        static: dict[str, Any] = {attr.SDK_NAME: SDK_NAME, attr.SDK_VERSION: __version__}
        if self.git.repo:
            static[attr.GIT_REPO] = self.git.repo
        if self.git.ref:
            static[attr.GIT_REF] = self.git.ref
        if self.config.environment:
            static[attr.ENVIRONMENT] = self.config.environment
        return Stamper(static), ExportPipeline(self.config, self.redact)

    def _resource(self) -> Resource:
        values: dict[str, Any] = {"service.name": self.config.service_name}
        if self.config.release:
            values["service.version"] = self.config.release
        if self.config.environment:
            values["deployment.environment.name"] = self.config.environment
        # OpenTelemetry's own warning about OTEL_RESOURCE_ATTRIBUTES: said in words already.
        resources_logger = logging.getLogger("opentelemetry.sdk.resources")
        quiet = QuietResourceWarnings()
        resources_logger.addFilter(quiet)
        try:
            return Resource.create(values)
        finally:
            resources_logger.removeFilter(quiet)

    def _announce(self) -> None:
        destination = self.config.destination
        logger.info("traceroot: sending traces to %s", destination.describe())

    def reconfigure(self, config: Config, redact: Redact | None, mode: Mode) -> None:
        """Take over from an automatic initialization with the user's explicit settings."""
        self.mode = mode
        self.redact = redact if redact is not None else self.redact
        old, was_closed = self.config, self._closed
        self.config = config
        self._closed = not config.enabled
        if not config.enabled:
            if self._processor is not None:
                self._processor.pipeline.shutdown()
            return
        if self._processor is None:
            self._start()
            return
        if config == old and redact is None and not was_closed:
            return
        self.git = git.detect(config.git_repo, config.git_ref)
        stamping, pipeline = self._build_processors()
        previous = self._processor.pipeline
        self._processor.stamping, self._processor.pipeline = stamping, pipeline
        previous.shutdown()
        if old.destination != config.destination:
            self._announce()

    def activate_integrations(
        self, requested: Sequence[integrations.Integration | str] | str | None, explicit: bool
    ) -> None:
        """Instrument the requested libraries (on import) with our provider."""
        if self._provider is None:
            return
        try:
            integrations.activate(requested, self._provider, explicit=explicit)
        except Exception as exc:  # the registry never raises; this guards the program anyway
            logger.warning("traceroot: enabling integrations failed (%s)", in_words(exc))

    def unsampled_child(self, parent: trace.Span | None = None) -> trace.Span | None:
        """A bare non-recording span when the parent (default: the current span) is
        unsampled, else None.

        With light spans the sampler is parent-based, so such a call is decided before
        anything is captured or stamped: an unsampled call costs less than a sampled one.
        """
        light = self._light
        if light is None:
            return None
        if parent is None:
            parent = trace.get_current_span()
        if parent is trace.INVALID_SPAN or type(parent) is LightSpan:
            return None  # no parent, or one of our spans (they are sampled)
        context = parent.get_span_context()
        if context.is_valid and not context.trace_flags.sampled:
            return light.start_span("", {}, context)
        return None

    def start_span(
        self,
        name: str,
        attributes: dict[str, Any],
        parent_context: context_api.Context | None = None,
        parent: trace.Span | None = None,
    ) -> trace.Span:
        """A span named `name`: the contract attributes, then ours.

        It starts in `parent_context` (default: the current context) under `parent`, the
        span current in it (the caller passes both when it has read them already).
        """
        processor = self._processor
        if processor is None:
            return trace.INVALID_SPAN
        if parent_context is None:
            parent_context = run_parents.current_context()
        if parent is None:
            parent = trace.get_current_span(parent_context)
        stamping = processor.stamping
        stamped, stamped_path = stamping.stamp(name, parent_context, parent)
        path: Path | None = stamped_path
        if attr.SPAN_PATH in attributes or attr.SPAN_IDS_PATH in attributes:
            path = None  # the caller sets its own path: read it back once merged
        stamped.update(attributes)
        light = self._light
        if light is not None:
            span, span_id = light.start_under(name, stamped, parent)
            if span_id is not None:  # None: not sampled, nothing to stamp
                if path is not None:
                    stamping.remember(span_id, path)
                else:
                    stamping.opened(span_id, stamped)
            return span
        return self.tracer.start_span(name, context=parent_context, attributes=stamped)

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued; waits at most `timeout` seconds (default: the shutdown timeout)."""
        if self._processor is None or self._closed:
            return True
        budget = self.config.shutdown_timeout if timeout is None else timeout
        return self._processor.pipeline.force_flush(int(budget * 1000))

    def shutdown(self) -> None:
        """Flush within `TRACEROOT_SHUTDOWN_TIMEOUT`, then stop exporting."""
        if self._closed:
            return
        self._closed = True
        if self._processor is not None:
            self._processor.pipeline.shutdown()


# The reference SDK spells the class this way; programs written for it keep working.
TracerootClient = TraceRootClient

"""The burst on a plain OpenTelemetry pipeline: TracerProvider + BatchSpanProcessor +
OTLP/HTTP exporter, all at their defaults (the harness sizes the queue with the standard
OTEL_BSP_MAX_QUEUE_SIZE for the all-delivering baseline). The decorator is the smallest
one a user would write: a span named after the function, no attributes. The provider
flushes in its own exit hook.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from workload import CHILDREN, run

F = TypeVar("F", bound=Callable[..., int])

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint from the env
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("bench")


def observe(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: int) -> int:
        with tracer.start_as_current_span(fn.__name__):
            return fn(*args)

    return wrapper  # type: ignore[return-value]


@observe
def child(i: int) -> int:
    return i * 2


@observe
def root(r: int) -> int:
    return sum(child(i) for i in range(CHILDREN))


run(root)

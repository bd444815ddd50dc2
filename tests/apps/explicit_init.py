"""User code that also calls traceroot.initialize() itself."""

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import traceroot
from traceroot import observe

traceroot.initialize()


@observe(name="explicit")
def run() -> str:
    return "ok"


run()
provider = trace.get_tracer_provider()
print(isinstance(provider, TracerProvider), len(provider._active_span_processor._span_processors))

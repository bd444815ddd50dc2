"""Living with OpenTelemetry: joining an installed provider, and the standard OTLP variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from otlp_receiver import OTLPReceiver
from sdk_helpers import TRACES_PATH, check, run_traced, stdout_json, warnings_in

JOIN = r"""
import json
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# The application's own OpenTelemetry setup, made before traceroot.
app_exporter = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "app-svc"}))
provider.add_span_processor(SimpleSpanProcessor(app_exporter))
trace.set_tracer_provider(provider)

import traceroot
client = traceroot.initialize()

@traceroot.observe(type="agent")
def handle(q):
    with trace.get_tracer("app.http").start_as_current_span("db-query") as s:
        s.set_attribute("db.system", "postgresql")
    return q

app_tracer = trace.get_tracer("app.http")
with app_tracer.start_as_current_span("http-request"):
    handle("hi")

print(json.dumps({
    "same_provider": client.tracer_provider is provider
        and trace.get_tracer_provider() is provider,
    "app_spans": {
        s.name: {k: list(v) if isinstance(v, tuple) else v for k, v in s.attributes.items()}
        for s in app_exporter.get_finished_spans()
    },
}))
"""


def test_joins_an_installed_provider(run_python, receiver: OTLPReceiver, traceroot_env) -> None:
    proc, spans = run_traced(run_python, receiver, traceroot_env, JOIN, expect=3)
    out = stdout_json(proc)
    assert out["same_provider"] is True
    assert "Overriding" not in proc.stderr  # we did not fight over the global provider

    # The app's exporter still gets everything, ours included, with our attributes.
    app = out["app_spans"]
    assert set(app) == {"http-request", "handle", "db-query"}
    assert app["http-request"]["traceroot.sdk.name"] == "traceroot-py"
    assert app["http-request"]["traceroot.span.path"] == ["http-request"]
    assert app["db-query"]["traceroot.span.path"] == ["http-request", "handle", "db-query"]
    assert app["db-query"]["db.system"] == "postgresql"
    assert app["handle"]["traceroot.span.type"] == "agent"

    # TraceRoot gets the same three spans, one trace, on the app's resource.
    assert spans.names() == ["db-query", "handle", "http-request"]
    request, handle, query = spans.one("http-request"), spans.one("handle"), spans.one("db-query")
    assert len({s.trace_id for s in spans}) == 1
    assert handle.parent_span_id == request.span_id and query.parent_span_id == handle.span_id
    assert query.attributes["traceroot.span.ids_path"] == [request.span_id, handle.span_id]
    assert request.attributes["traceroot.sdk.name"] == "traceroot-py"
    assert {s.resource["service.name"] for s in spans} == {"app-svc"}
    assert request.scope_name == "app.http" and handle.scope_name == "traceroot-sdk"


PLAIN = r"""
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
import traceroot
traceroot.initialize()

@traceroot.observe(type="tool")
def work():
    return 1

work()
"""


def test_otlp_traces_endpoint_without_a_key(run_python, receiver: OTLPReceiver) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url + "/v1/traces",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # the specific one wins
        "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc%20def123456,x-team=ml",
        "TRACEROOT_ENVIRONMENT": "prod",
    }
    proc, spans = run_traced(run_python, receiver, env, PLAIN, expect=1)
    (request,) = receiver.requests
    assert request.path == "/v1/traces" and request.gzip
    assert request.headers["x-api-key"] == "abc def123456"  # URL-decoded
    assert request.headers["x-team"] == "ml"
    assert request.headers["content-type"] == "application/x-protobuf"
    assert "authorization" not in request.headers
    span = spans.one("work")
    assert span.attributes["traceroot.span.type"] == "tool"
    assert span.attributes["traceroot.sdk.name"] == "traceroot-py"
    assert span.attributes["traceroot.environment"] == "prod"
    assert span.attributes["traceroot.span.path"] == ["work"]
    assert span.scope_name == "traceroot-sdk"

    # Logged once at start-up, at INFO, with the secret header masked; no local notice.
    info = warnings_in(proc.stderr, "sending traces to")
    assert len(info) == 1 and info[0].startswith("INFO ")
    assert receiver.url + "/v1/traces" in info[0]
    assert "abc def123456" not in proc.stderr and "def123456" not in proc.stderr
    assert "x-team" in info[0] and "=ml" not in info[0] and "'ml'" not in info[0]  # all masked
    assert "traces stay local" not in proc.stderr
    assert "traceroot: trace " not in proc.stderr  # no console tree either


def test_otlp_base_endpoint_gets_v1_traces(run_python, receiver: OTLPReceiver) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url + "/"}
    run_traced(run_python, receiver, env, PLAIN, expect=1)
    assert [r.path for r in receiver.requests] == ["/v1/traces"]


def test_a_key_wins_over_otlp_variables_and_is_masked(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    env = {
        **traceroot_env,
        "TRACEROOT_API_KEY": "tr-0123456789abcdef",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    }
    proc, _ = run_traced(run_python, receiver, env, PLAIN, expect=1)
    assert [r.path for r in receiver.requests] == [TRACES_PATH]
    assert receiver.requests[0].headers["authorization"] == "Bearer tr-0123456789abcdef"
    info = warnings_in(proc.stderr, "sending traces to")
    assert len(info) == 1 and info[0].startswith("INFO ")
    assert "TraceRoot" in info[0] and receiver.url + TRACES_PATH in info[0]
    assert "0123456789abcdef" not in proc.stderr


def test_bad_otlp_endpoint_warns_and_stays_local(run_python) -> None:
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318"}
    proc = check(run_python(PLAIN, env=env))
    lines = warnings_in(proc.stderr, "collector:4318")
    assert len(lines) == 1 and "WARNING" in lines[0]
    assert "traces stay local" in proc.stderr


# The application's own OpenTelemetry setup made after traceroot's provider is installed:
# under traceroot-run (which installs it when the program imports OpenTelemetry), or after
# an initialize() call. OpenTelemetry refuses a second global provider ("Overriding of
# current TracerProvider is not allowed"): the application's exporters once got nothing.
LATE_SETUP = r"""
import json, sys
if sys.argv[1:] == ["initialize"]:
    import traceroot
    traceroot.initialize()
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from traceroot import observe

app_exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(app_exporter))
trace.set_tracer_provider(provider)

@observe(type="agent")
def handle(q):
    with trace.get_tracer("app.http").start_as_current_span("db-query"):
        return q

with trace.get_tracer("app.http").start_as_current_span("http-request"):
    handle("hi")
print(json.dumps(sorted(s.name for s in app_exporter.get_finished_spans())))
"""


def _late_setup_checked(proc: Any, receiver: OTLPReceiver) -> None:
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["db-query", "handle", "http-request"]
    assert "Overriding" not in proc.stderr and proc.stderr == ""
    spans = receiver.wait_for_spans(3)
    assert sorted(s.name for s in spans) == ["db-query", "handle", "http-request"]
    assert len({s.trace_id for s in spans}) == 1


def test_a_provider_set_up_under_the_launcher_gets_every_span(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    from test_launcher import launch, program_env

    (tmp_path / "app.py").write_text(LATE_SETUP)
    env = program_env({**traceroot_env, "TRACEROOT_CONSOLE": "false"})
    _late_setup_checked(launch(["python", "app.py"], env, tmp_path), receiver)


def test_a_provider_set_up_after_initialize_gets_every_span(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    _late_setup_checked(run_python(LATE_SETUP, env=traceroot_env, args=("initialize",)), receiver)


def test_a_provider_that_cannot_be_joined_is_said_so_in_words(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    # An SDK release where the provider keeps its processors elsewhere (simulated): one
    # warning saying what the program loses and what to do; traceroot's spans still go.
    script = """
import traceroot
traceroot.initialize()
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

class Elsewhere(TracerProvider):
    _active_span_processor = property(lambda self: None, lambda self, value: None)

trace.set_tracer_provider(Elsewhere())

@traceroot.observe
def work():
    return 1

work()
"""
    proc, spans = run_traced(run_python, receiver, traceroot_env, script, expect=1)
    [warning] = warnings_in(proc.stderr, "traceroot:")
    assert "sets its own TracerProvider" in warning and "get no spans" in warning
    assert "traceroot.initialize() after setting the provider" in warning
    assert spans.names() == ["work"]

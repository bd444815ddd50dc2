"""Configuration end to end: bad values warn and fall back, arguments win, keys stay masked."""

from __future__ import annotations

import json

import pytest
from otlp_receiver import OTLPReceiver, dead_url
from sdk_helpers import check, run_traced, stdout_json, warnings_in

TRACED = r"""
import asyncio, json, sys
import traceroot
from traceroot import observe

client = traceroot.initialize()

@observe()
def f(x):
    return x + 1

@observe()
async def af(x):
    return x * 2

@observe()
def g(n):
    yield from range(n)

@observe()
def bad():
    raise KeyError("k")

out = {"f": f(1), "af": asyncio.run(af(2)), "g": list(g(3))}
try:
    bad()
except KeyError as exc:
    out["raised"] = repr(exc)
out["enabled"] = client.enabled
out["config"] = {
    "flush_at": client.config.flush_at, "timeout": client.config.timeout,
    "flush_interval": client.config.flush_interval, "host_url": client.config.host_url,
    "max_attribute_length": client.config.max_attribute_length,
    "shutdown_timeout": client.config.shutdown_timeout,
}
print(json.dumps(out))
"""

EXPECTED_RESULTS = {"f": 2, "af": 4, "g": [0, 1, 2], "raised": "KeyError('k')"}


def test_bad_values_warn_once_and_fall_back(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    env = {
        **traceroot_env,
        "TRACEROOT_FLUSH_AT": "abc",
        "TRACEROOT_TIMEOUT": "-3",
        "TRACEROOT_FLUSH_INTERVAL": "nan",
        "TRACEROOT_MAX_ATTRIBUTE_LENGTH": "0",
        "TRACEROOT_SHUTDOWN_TIMEOUT": "soon",
    }
    proc, spans = run_traced(run_python, receiver, env, TRACED, expect=4)
    out = stdout_json(proc)
    assert {k: out[k] for k in EXPECTED_RESULTS} == EXPECTED_RESULTS
    assert out["enabled"] is True
    assert out["config"] == {
        "flush_at": 100,
        "timeout": 30.0,
        "flush_interval": 5.0,
        "host_url": receiver.url,
        "max_attribute_length": 32768,
        "shutdown_timeout": 5.0,
    }
    for name, value, default in [
        ("TRACEROOT_FLUSH_AT", "abc", "100"),
        ("TRACEROOT_TIMEOUT", "-3", "30.0"),
        ("TRACEROOT_FLUSH_INTERVAL", "nan", "5.0"),
        ("TRACEROOT_MAX_ATTRIBUTE_LENGTH", "0", "32768"),
        ("TRACEROOT_SHUTDOWN_TIMEOUT", "soon", "5.0"),
    ]:
        lines = warnings_in(proc.stderr, f"{name}=")
        assert len(lines) == 1, (name, proc.stderr)
        assert f"'{value}'" in lines[0] and default in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert spans.names() == ["af", "bad", "f", "g"]


def test_second_initialize_warns_and_keeps_the_first(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    script = r"""
import json, traceroot
a = traceroot.initialize()
b = traceroot.initialize(api_key="other-key", environment="ignored")

@traceroot.observe
def f():
    return 1

f()
print(json.dumps({"same": a is b, "client": a is traceroot.get_client()}))
"""
    env = {**traceroot_env, "TRACEROOT_FLUSH_AT": "abc"}
    proc, spans = run_traced(run_python, receiver, env, script, expect=1)
    assert stdout_json(proc) == {"same": True, "client": True}
    assert len(warnings_in(proc.stderr, "more than once")) == 1, proc.stderr
    # A bad value is reported once per process, not once per initialize() call.
    assert len(warnings_in(proc.stderr, "TRACEROOT_FLUSH_AT")) == 1, proc.stderr
    assert {r.headers["authorization"] for r in receiver.requests} == {"Bearer test-key"}
    assert "traceroot.environment" not in spans.one("f").attributes


def test_arguments_beat_environment(run_python, receiver: OTLPReceiver) -> None:
    script = f"""
import traceroot
traceroot.initialize(
    api_key="arg-key", host_url={receiver.url!r}, environment="from-arg",
    batch_size=1, flush_interval=0.1, timeout=5,
)

@traceroot.observe
def f(i):
    return i

for i in range(3):
    f(i)
"""
    env = {
        "TRACEROOT_API_KEY": "env-key",
        "TRACEROOT_HOST_URL": dead_url(),
        "TRACEROOT_ENVIRONMENT": "from-env",
        "TRACEROOT_FLUSH_AT": "abc",  # not even read: the argument wins
        "TRACEROOT_FLUSH_INTERVAL": "30",
    }
    proc, spans = run_traced(run_python, receiver, env, script, expect=3)
    assert {r.headers["authorization"] for r in receiver.requests} == {"Bearer arg-key"}
    assert "TRACEROOT_FLUSH_AT" not in proc.stderr
    assert {s.attributes["traceroot.environment"] for s in spans} == {"from-arg"}
    assert {s.resource["deployment.environment.name"] for s in spans} == {"from-arg"}


def test_bad_argument_and_host_without_scheme(run_python) -> None:
    script = r"""
import json, traceroot
c = traceroot.initialize(api_key="k", batch_size=-5)
print(json.dumps({"host": c.config.host_url, "flush_at": c.config.flush_at}))
"""
    proc = check(run_python(script, env={"TRACEROOT_HOST_URL": "app.example.com/x"}))
    assert stdout_json(proc) == {"host": "https://app.traceroot.ai", "flush_at": 100}
    host = warnings_in(proc.stderr, "TRACEROOT_HOST_URL")
    assert len(host) == 1 and "'app.example.com/x'" in host[0]
    assert "https://app.traceroot.ai" in host[0]
    arg = warnings_in(proc.stderr, "batch_size")
    assert len(arg) == 1 and "-5" in arg[0] and "100" in arg[0]


@pytest.mark.parametrize("value", [" false ", "OFF"])
def test_enabled_false_sends_nothing(
    run_python, receiver: OTLPReceiver, traceroot_env, value: str
) -> None:
    env = {**traceroot_env, "TRACEROOT_ENABLED": value, "TRACEROOT_CONSOLE": "true"}
    proc = check(run_python(TRACED, env=env))
    out = stdout_json(proc)
    assert {k: out[k] for k in EXPECTED_RESULTS} == EXPECTED_RESULTS
    assert out["enabled"] is False
    assert proc.stderr == ""  # no warning, no console tree, no notice
    assert receiver.requests == []


def test_enabled_argument_and_bad_enabled_value(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    # Initialized after the functions were decorated: the wrappers see it at call time.
    script = TRACED.replace("client = traceroot.initialize()\n", "").replace(
        "out = {", "client = traceroot.initialize(enabled=False)\nout = {"
    )
    assert script.count("initialize(enabled=False)") == 1
    proc = check(run_python(script, env={**traceroot_env, "TRACEROOT_ENABLED": "true"}))
    out = stdout_json(proc)
    assert {k: out[k] for k in EXPECTED_RESULTS} == EXPECTED_RESULTS
    assert out["enabled"] is False
    assert receiver.requests == []

    proc, spans = run_traced(
        run_python, receiver, {**traceroot_env, "TRACEROOT_ENABLED": "maybe"}, TRACED, expect=4
    )
    lines = warnings_in(proc.stderr, "TRACEROOT_ENABLED")
    assert len(lines) == 1 and "'maybe'" in lines[0] and "using the default true." in lines[0]
    assert stdout_json(proc)["enabled"] is True


def test_lazy_initialization_then_explicit(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    script = r"""
import json, traceroot

@traceroot.observe
def before():
    return 1

before()  # no initialize() yet: initialized from the environment
lazy = traceroot.get_client()
client = traceroot.initialize(environment="late")

@traceroot.observe
def after():
    return 2

after()
print(json.dumps({"mode": client.mode, "same": lazy is client}))
"""
    proc, spans = run_traced(run_python, receiver, traceroot_env, script, expect=2)
    assert stdout_json(proc) == {"mode": "explicit", "same": True}
    assert "more than once" not in proc.stderr
    assert spans.one("before").attributes["traceroot.sdk.name"] == "traceroot-py"
    assert "traceroot.environment" not in spans.one("before").attributes
    assert spans.one("after").attributes["traceroot.environment"] == "late"


SECRET = "tr-sk-SUPERSECRET-0123456789"


def test_api_key_never_in_logs_or_repr(run_python, receiver: OTLPReceiver) -> None:
    script = r"""
import logging, sys, json
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
import traceroot
client = traceroot.initialize(redact=lambda a: a)

@traceroot.observe
def f():
    return 1

f()
traceroot.flush(2)
print(repr(client))
print(repr(client.config), str(client.config))
print(repr(client.config.destination))
print(json.dumps({"ok": True}))
"""
    receiver.script([401])  # the backend refuses the key: the warning must not quote it
    env = {"TRACEROOT_API_KEY": SECRET, "TRACEROOT_HOST_URL": receiver.url}
    proc = check(run_python(script, env=env))
    assert stdout_json(proc) == {"ok": True}
    assert receiver.requests and receiver.requests[0].status == 401
    assert warnings_in(proc.stderr, "401"), proc.stderr
    output = proc.stdout + proc.stderr
    assert SECRET not in output
    assert "SUPERSECRET" not in output
    assert "tr-s...6789" in proc.stdout  # masked, recognisable
    info = warnings_in(proc.stderr, "sending traces to")
    assert len(info) == 1 and receiver.url in info[0]
    assert json.dumps(SECRET) not in output


ENABLED_BY_ARGUMENT = r"""
import traceroot

@traceroot.observe
def decorated_before():
    return 1

traceroot.initialize(enabled=True)

@traceroot.observe
def decorated_after():
    return 2

decorated_before()
decorated_after()
"""


def test_enabled_argument_beats_disabled_environment(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    env = {**traceroot_env, "TRACEROOT_ENABLED": "false"}
    _, spans = run_traced(run_python, receiver, env, ENABLED_BY_ARGUMENT, expect=1)
    assert "decorated_after" in spans.names()


def test_functions_decorated_while_disabled_by_environment_cost_nothing(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    # TRACEROOT_ENABLED=false at import is the kill switch: such functions are returned
    # undecorated (no per-call cost), so only those decorated after initialize() trace.
    env = {**traceroot_env, "TRACEROOT_ENABLED": "false"}
    _, spans = run_traced(run_python, receiver, env, ENABLED_BY_ARGUMENT, expect=1)
    assert spans.names() == ["decorated_after"]


@pytest.mark.parametrize("value", ["none", "console", "otlp,zipkin"])
def test_opentelemetry_instruments_exporter_variable_is_said_to_be_unread(
    run_python, receiver: OTLPReceiver, traceroot_env, value: str
) -> None:
    """`OTEL_TRACES_EXPORTER=none` under opentelemetry-instrument sends nothing; here it did
    not mean that, and nothing said so."""
    proc, spans = run_traced(
        run_python, receiver, {**traceroot_env, "OTEL_TRACES_EXPORTER": value}, TRACED, expect=4
    )
    assert stdout_json(proc)["f"] == 2 and len(spans) >= 4  # traced as usual
    (warning,) = warnings_in(proc.stderr, "OTEL_TRACES_EXPORTER")
    assert warning.startswith(
        f"traceroot: OTEL_TRACES_EXPORTER='{value}' is opentelemetry-instrument's variable; "
        f"traceroot does not read it: traces go to TraceRoot {receiver.url}/"
    )
    assert "TRACEROOT_ENABLED=false" in warning


def test_opentelemetry_instruments_otlp_exporter_goes_without_a_word(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    env = {**traceroot_env, "OTEL_TRACES_EXPORTER": "otlp"}
    proc, _ = run_traced(run_python, receiver, env, TRACED, expect=4)
    assert "OTEL_TRACES_EXPORTER" not in proc.stderr


def test_a_host_url_given_as_the_traces_endpoint_is_not_doubled(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    env = {**traceroot_env, "TRACEROOT_HOST_URL": f"{receiver.url}/api/v1/public/traces/"}
    run_traced(run_python, receiver, env, TRACED, expect=4)
    assert {request.path for request in receiver.requests} == {"/api/v1/public/traces"}


# -- values pasted the way other tools keep them -------------------------------------

CLEAN_KEY = "tr-pasted-key-0123456789"


@pytest.mark.parametrize(
    "raw",
    [f'"{CLEAN_KEY}"', f"'{CLEAN_KEY}'", f"Bearer {CLEAN_KEY}", f"bearer {CLEAN_KEY}"],
)
def test_a_quoted_or_bearer_api_key_is_sent_clean_with_one_warning(
    run_python, receiver: OTLPReceiver, traceroot_env, raw: str
) -> None:
    """`docker --env-file` keeps quotes: the key went out as `Bearer "tr-..."`, and a key
    pasted with its scheme as `Bearer Bearer tr-...`."""
    env = {**traceroot_env, "TRACEROOT_API_KEY": raw}
    proc, _ = run_traced(run_python, receiver, env, TRACED, expect=4)
    assert {r.headers["authorization"] for r in receiver.requests} == {f"Bearer {CLEAN_KEY}"}
    (warning,) = warnings_in(proc.stderr, "TRACEROOT_API_KEY")
    assert CLEAN_KEY not in proc.stderr and "tr-p...6789" in warning  # masked
    assert "Fix TRACEROOT_API_KEY" in warning


def test_an_api_key_with_an_otlp_endpoint_says_which_wins(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    """The OTLP endpoint and its headers were ignored without a word."""
    env = {
        **traceroot_env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": dead_url(),
        "OTEL_EXPORTER_OTLP_HEADERS": "x-team=hcsecret0123456",
    }
    proc, _ = run_traced(run_python, receiver, env, TRACED, expect=4)  # TraceRoot wins
    (warning,) = warnings_in(proc.stderr, "OTEL_EXPORTER_OTLP_ENDPOINT")
    assert "TRACEROOT_API_KEY" in warning and "OTEL_EXPORTER_OTLP_HEADERS" in warning
    assert "unset TRACEROOT_API_KEY" in warning
    assert "hcsecret0123456" not in proc.stderr


def test_a_generic_endpoint_ending_in_the_traces_path_is_named(
    run_python, receiver: OTLPReceiver
) -> None:
    """The specification appends /v1/traces to the generic variable: spans went to
    /v1/traces/v1/traces, silently."""
    value = f"{receiver.url}/v1/traces"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": value, "TRACEROOT_FLUSH_INTERVAL": "0.2"}
    proc, _ = run_traced(run_python, receiver, env, TRACED, expect=4)
    assert {r.path for r in receiver.requests} == {"/v1/traces/v1/traces"}  # the spec's rule
    (warning,) = warnings_in(proc.stderr, "OTEL_EXPORTER_OTLP_ENDPOINT")
    assert f"OTEL_EXPORTER_OTLP_ENDPOINT='{value}'" in warning
    assert f"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={value}" in warning
    assert f"OTEL_EXPORTER_OTLP_ENDPOINT={receiver.url}" in warning


def test_invalid_booleans_name_the_default_as_documented(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    """The warnings said `using the default None` / `True` / `False`: Python's spelling."""
    env = {
        **traceroot_env,
        "TRACEROOT_CONSOLE": "maybe",
        "TRACEROOT_DEBUG": "perhaps",
        "TRACEROOT_SCRUB": "sure",
    }
    proc, _ = run_traced(run_python, receiver, env, TRACED, expect=4)
    (console,) = warnings_in(proc.stderr, "TRACEROOT_CONSOLE=")
    (debug,) = warnings_in(proc.stderr, "TRACEROOT_DEBUG=")
    (scrub,) = warnings_in(proc.stderr, "TRACEROOT_SCRUB=")
    assert "None" not in console and "local mode" in console, console
    assert "using the default false." in debug, debug
    assert "using the default true." in scrub, scrub

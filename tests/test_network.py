"""Export through real networks: proxies, CAs, mTLS, redirects, compression, the OTLP variables.

Every test runs a real program against real loopback servers: an HTTP proxy that
logs what it forwards, TLS and mTLS receivers with a CA made for the test, a
receiver that answers 413 to everything, and forks after a first export.
"""

from __future__ import annotations

import ssl
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RunPython
from net_servers import CA, ConnectProxy, GRPCReceiver, make_ca
from otlp_receiver import DROP, OTLPReceiver, dead_url
from test_launcher import launch, program_env

from traceroot._otlp_config import resolve_otlp

TRACES = "/api/v1/public/traces"
PASSWORD = "pr0xy-s3cret-pass"

SMALL = """
from traceroot import observe

@observe
def step(i: int) -> int:
    return i

for i in range(20):
    step(i)
print("done")
"""


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_receiver(ca: CA) -> Iterator[OTLPReceiver]:
    with OTLPReceiver(ssl_context=ca.server_context()) as rx:
        yield rx


@pytest.fixture
def mtls_receiver(ca: CA) -> Iterator[OTLPReceiver]:
    with OTLPReceiver(ssl_context=ca.server_context(require_client_cert=True)) as rx:
        yield rx


# The machine's CA-bundle variables requests and curl read (the environment may set them):
# empty, they are unset for the program.
NO_CA_BUNDLES = {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""}


def traceroot_to(url: str, **extra: str) -> dict[str, str]:
    return {"TRACEROOT_API_KEY": "test-key", "TRACEROOT_HOST_URL": url, **extra}


def run_ok(run_python: RunPython, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = run_python(SMALL, env=env)
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    return done


def assert_no_raw_bytes(text: str) -> None:
    assert "\\x" not in text and "b'" not in text and "Error(" not in text, text


# -- proxies ------------------------------------------------------------------------


def test_https_spans_go_through_the_proxy_with_its_credentials(
    tls_receiver: OTLPReceiver, ca: CA, run_python: RunPython
) -> None:
    with ConnectProxy(credentials=f"user:{PASSWORD}") as proxy:
        proxy_url = proxy.url.replace("http://", f"http://user:{PASSWORD}@")
        env = traceroot_to(
            tls_receiver.url,
            HTTPS_PROXY=proxy_url,
            OTEL_EXPORTER_OTLP_CERTIFICATE=str(ca.ca_file),
        )
        done = run_ok(run_python, env)
        tls_receiver.wait_for_spans(20)
    tunnels = [f for f in proxy.log if f.method == "CONNECT"]
    assert tunnels and all(f.status == 200 for f in tunnels)
    assert tunnels[0].target == f"127.0.0.1:{tls_receiver.port}"
    assert PASSWORD not in done.stderr
    # One kept-alive connection carried the export: one tunnel, not one per request.
    assert len(tunnels) == 1


def test_no_proxy_bypasses_the_proxy(receiver: OTLPReceiver, run_python: RunPython) -> None:
    with ConnectProxy() as proxy:
        env = traceroot_to(receiver.url, http_proxy=proxy.url, NO_PROXY="localhost,127.0.0.1")
        run_ok(run_python, env)
        receiver.wait_for_spans(20)
        assert proxy.log == []
        # Without NO_PROXY the same program goes through it (lower-case variable, plain http).
        receiver.clear()
        run_ok(run_python, traceroot_to(receiver.url, http_proxy=proxy.url))
        receiver.wait_for_spans(20)
    assert [f.method for f in proxy.log][:1] == ["POST"]
    assert proxy.log[0].target == f"{receiver.url}{TRACES}"


def test_a_socks_proxy_is_named_with_the_fix_and_no_proxy_still_bypasses_it(
    receiver: OTLPReceiver, run_python: RunPython
) -> None:
    """urllib3 refuses a socks:// proxy; that came out as 'ProxySchemeUnknown: ...'."""
    env = traceroot_to(receiver.url, http_proxy="socks5://127.0.0.1:1080")
    started = time.monotonic()
    done = run_ok(run_python, {**env, "TRACEROOT_SHUTDOWN_TIMEOUT": "30"})
    assert time.monotonic() - started < 15, "a proxy we cannot use is not waited for at exit"
    assert (
        "traceroot: http_proxy names a socks5:// proxy, which traceroot cannot use: set an "
        "http:// or https:// proxy there, or add 127.0.0.1 to NO_PROXY\n"
    ) in done.stderr
    assert (
        "ProxySchemeUnknown" not in done.stderr and "20 span(s) were not delivered" in done.stderr
    )
    assert receiver.spans == []
    run_ok(run_python, {**env, "NO_PROXY": "127.0.0.1"})
    assert len(receiver.wait_for_spans(20)) == 20


def test_a_proxy_refusing_the_tunnel_is_reported_in_words(
    tls_receiver: OTLPReceiver, ca: CA, run_python: RunPython
) -> None:
    with ConnectProxy(credentials="user:right") as proxy:
        env = traceroot_to(
            tls_receiver.url,
            HTTPS_PROXY=proxy.url,  # no credentials: 407
            OTEL_EXPORTER_OTLP_CERTIFICATE=str(ca.ca_file),
            TRACEROOT_SHUTDOWN_TIMEOUT="30",
        )
        started = time.monotonic()
        done = run_ok(run_python, env)
        elapsed = time.monotonic() - started
    assert f"the proxy {proxy.url} requires credentials (HTTP 407" in done.stderr
    assert "check HTTPS_PROXY" in done.stderr
    assert "20 span(s) were not delivered" in done.stderr
    assert_no_raw_bytes(done.stderr)
    assert elapsed < 15, "a proxy refusing us is not waited for at exit"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_refusing_the_credentials_is_named_not_the_backend(
    receiver: OTLPReceiver,
    tls_receiver: OTLPReceiver,
    ca: CA,
    run_python: RunPython,
    scheme: str,
) -> None:
    """Plain http said "127.0.0.1 refused the spans with HTTP 407", blaming the backend;
    https ended in `(407 Proxy Authentication Required')))`."""
    variable = f"{scheme.upper()}_PROXY"
    target = receiver if scheme == "http" else tls_receiver
    with ConnectProxy(credentials=f"user:{PASSWORD}") as proxy:
        env = traceroot_to(
            target.url,
            **{variable: proxy.url.replace("http://", "http://user:wrong-pass-42@")},
            OTEL_EXPORTER_OTLP_CERTIFICATE=str(ca.ca_file),
            TRACEROOT_SHUTDOWN_TIMEOUT="30",
        )
        started = time.monotonic()
        done = run_ok(run_python, env)
        elapsed = time.monotonic() - started
    assert proxy.log and all(f.status == 407 for f in proxy.log)
    line = f"traceroot: the proxy {proxy.url} refused the credentials (HTTP 407"
    assert line in done.stderr, done.stderr
    assert f"check the user and password in {variable}" in done.stderr
    assert "refused the spans" not in done.stderr and "')" not in done.stderr
    assert "wrong-pass-42" not in done.stderr
    assert target.spans == []
    assert_no_raw_bytes(done.stderr)
    assert elapsed < 15, "a proxy refusing us is not waited for at exit"


# -- certificates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable",
    [
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
    ],
)
def test_a_private_ca_given_by_each_variable(
    tls_receiver: OTLPReceiver, ca: CA, run_python: RunPython, variable: str
) -> None:
    env = traceroot_to(tls_receiver.url, **{**NO_CA_BUNDLES, variable: str(ca.ca_file)})
    run_ok(run_python, env)
    assert len(tls_receiver.wait_for_spans(20)) == 20


def test_the_certificate_variable_applies_to_an_otlp_endpoint(
    tls_receiver: OTLPReceiver, ca: CA, run_python: RunPython
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": tls_receiver.url,
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(ca.ca_file),
        "TRACEROOT_FLUSH_INTERVAL": "0.2",
    }
    run_ok(run_python, env)
    tls_receiver.wait_for_spans(20)
    assert tls_receiver.requests[0].path == "/v1/traces"


def test_an_untrusted_certificate_fails_at_once_in_words(
    tls_receiver: OTLPReceiver, run_python: RunPython
) -> None:
    env = traceroot_to(tls_receiver.url, TRACEROOT_SHUTDOWN_TIMEOUT="30")
    started = time.monotonic()
    done = run_ok(run_python, env)
    assert time.monotonic() - started < 15, "exit waited out the shutdown timeout"
    line = f"traceroot: TLS certificate of 127.0.0.1:{tls_receiver.port} not trusted"
    assert line in done.stderr and "OTEL_EXPORTER_OTLP_CERTIFICATE" in done.stderr
    assert "Exit waits" not in done.stderr
    assert tls_receiver.spans == []
    assert_no_raw_bytes(done.stderr)


def test_mtls_needs_the_client_certificate(
    mtls_receiver: OTLPReceiver, ca: CA, run_python: RunPython
) -> None:
    base = traceroot_to(mtls_receiver.url, OTEL_EXPORTER_OTLP_CERTIFICATE=str(ca.ca_file))
    refused = run_ok(run_python, base)
    assert mtls_receiver.spans == []
    assert "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE" in refused.stderr
    assert "20 span(s) were not delivered" in refused.stderr
    assert_no_raw_bytes(refused.stderr)
    env = {
        **base,
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(ca.client_cert),
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(ca.client_key),
    }
    accepted = run_ok(run_python, env)
    assert len(mtls_receiver.wait_for_spans(20)) == 20
    assert "traceroot" not in accepted.stderr


def test_https_to_a_plain_http_port_is_named(receiver: OTLPReceiver, run_python: RunPython) -> None:
    url = receiver.url.replace("http://", "https://")
    done = run_ok(run_python, traceroot_to(url, TRACEROOT_SHUTDOWN_TIMEOUT="30"))
    assert f"127.0.0.1:{receiver.port} does not speak TLS: use http://" in done.stderr


# -- protocol, redirects, compression, credentials in the URL -------------------------


def test_otlp_http_to_a_grpc_port_says_so(run_python: RunPython) -> None:
    with GRPCReceiver() as grpc_port:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": grpc_port.url,
            "TRACEROOT_SHUTDOWN_TIMEOUT": "30",
        }
        started = time.monotonic()
        done = run_ok(run_python, env)
        elapsed = time.monotonic() - started
    assert "answered in HTTP/2, not OTLP/HTTP: it looks like a gRPC port (4317)" in done.stderr
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in done.stderr
    assert_no_raw_bytes(done.stderr)
    assert elapsed < 15
    assert grpc_port.requests == 0


def test_307_and_308_to_the_same_host_are_followed(
    receiver: OTLPReceiver, run_python: RunPython
) -> None:
    receiver.script([(307, {"Location": "/moved/v1/traces"}), (308, {"Location": "/final"})])
    done = run_ok(run_python, traceroot_to(receiver.url))
    receiver.wait_for_spans(20)
    assert [(r.path, r.status) for r in receiver.requests[:3]] == [
        (TRACES, 307),
        ("/moved/v1/traces", 308),
        ("/final", 200),
    ]
    assert "traceroot" not in done.stderr


@pytest.mark.parametrize("status,location", [(301, "/elsewhere"), (307, "http://localhost:9/x")])
def test_other_redirects_are_reported_in_one_line(
    receiver: OTLPReceiver, run_python: RunPython, status: int, location: str
) -> None:
    receiver.script([(status, {"Location": location})] * 50)
    done = run_ok(run_python, traceroot_to(receiver.url, TRACEROOT_SHUTDOWN_TIMEOUT="30"))
    lines = [line for line in done.stderr.splitlines() if "redirects to" in line]
    assert lines[0].startswith(f"traceroot: 127.0.0.1:{receiver.port} redirects to")
    assert f"(HTTP {status}); set TRACEROOT_HOST_URL to http" in lines[0]
    assert len(receiver.requests) == 1, "a redirect that is not followed is not retried"
    assert receiver.spans == []


@pytest.mark.parametrize(
    "variable,location,advice",
    [
        # The generic variable gets /v1/traces appended: the base URL is the one to set.
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://localhost:9/new/v1/traces",
            "set OTEL_EXPORTER_OTLP_ENDPOINT to http://localhost:9/new (/v1/traces is "
            "appended to it), or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT to "
            "http://localhost:9/new/v1/traces",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://localhost:9/ingest",
            "set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT to http://localhost:9/ingest (used as it is)",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://localhost:9/new/v1/traces",
            "set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT to http://localhost:9/new/v1/traces",
        ),
    ],
)
def test_a_redirect_names_the_url_to_set_for_the_variable_used(
    receiver: OTLPReceiver, run_python: RunPython, variable: str, location: str, advice: str
) -> None:
    """The advice said to set OTEL_EXPORTER_OTLP_ENDPOINT to the full .../v1/traces URL,
    which then gets /v1/traces appended again: spans to /v1/traces/v1/traces."""
    receiver.script([(307, {"Location": location})] * 50)
    url = receiver.url + ("/v1/traces" if variable.endswith("TRACES_ENDPOINT") else "")
    env = {variable: url, "TRACEROOT_SHUTDOWN_TIMEOUT": "30"}
    done = run_ok(run_python, env)
    (line,) = [x for x in done.stderr.splitlines() if " redirects to " in x and "span(s)" not in x]
    assert advice in line, line


def test_a_redirect_to_another_port_of_the_same_host_keeps_the_key(
    receiver: OTLPReceiver, run_python: RunPython
) -> None:
    """A 307 to the same host on another port was followed with the Authorization header."""
    with OTLPReceiver() as other:
        receiver.script([(307, {"Location": f"http://127.0.0.1:{other.port}{TRACES}"})] * 50)
        env = traceroot_to(receiver.url, TRACEROOT_SHUTDOWN_TIMEOUT="30")
        done = run_ok(run_python, env)
        assert other.requests == [], "the API key went to another port"
        other_port = other.port
    (line,) = [x for x in done.stderr.splitlines() if " redirects to " in x and "span(s)" not in x]
    assert f"http://127.0.0.1:{other_port}{TRACES} (HTTP 307)" in line
    assert "only 307/308 to the same scheme, host and port are followed" in line
    assert len(receiver.requests) == 1


def test_an_invalid_header_name_is_skipped_and_named(
    receiver: OTLPReceiver, run_python: RunPython
) -> None:
    """`bad name=SECRET` went out on the wire, as a header line no server should accept."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_HEADERS": "bad name=SECRETVALUE1,x-good=ok,x(y)=SECRETVALUE2",
        "TRACEROOT_FLUSH_INTERVAL": "0.2",
    }
    done = run_ok(run_python, env)
    receiver.wait_for_spans(20)
    headers = receiver.requests[0].headers
    assert headers["x-good"] == "ok"
    assert "bad name" not in headers and "x(y)" not in headers
    assert not any("SECRETVALUE" in v for v in headers.values())
    assert "SECRETVALUE" not in done.stderr
    assert "ignoring header 'bad name' in OTEL_EXPORTER_OTLP_HEADERS" in done.stderr
    assert "ignoring header 'x(y)' in OTEL_EXPORTER_OTLP_HEADERS" in done.stderr


def test_compression_none(receiver: OTLPReceiver, run_python: RunPython) -> None:
    env = traceroot_to(receiver.url, OTEL_EXPORTER_OTLP_COMPRESSION="none")
    run_ok(run_python, env)
    receiver.wait_for_spans(20)
    assert not receiver.requests[0].gzip
    assert "content-encoding" not in receiver.requests[0].headers


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown(
    receiver: OTLPReceiver, run_python: RunPython
) -> None:
    receiver.script([503] * 20)  # warnings, which must not show the password
    endpoint = receiver.url.replace("http://", f"http://alice:{PASSWORD}@") + "/v1/traces"
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint, "TRACEROOT_FLUSH_INTERVAL": "0.2"}
    done = run_ok(run_python, {**env, "TRACEROOT_TIMEOUT": "0.3"})
    receiver.wait_for_requests(1)
    assert "answered HTTP 503" in done.stderr and "not delivered" in done.stderr
    import base64

    expected = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert receiver.requests[0].headers["authorization"] == expected
    assert PASSWORD not in done.stderr


def test_traces_variables_win_over_the_generic_ones(
    receiver: OTLPReceiver, run_python: RunPython
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": dead_url(),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/custom/traces",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-team=generic,x-only-generic=1",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-team=traces",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none",
        "TRACEROOT_FLUSH_INTERVAL": "0.2",
    }
    run_ok(run_python, env)
    receiver.wait_for_spans(20)
    request = receiver.requests[0]
    assert request.path == "/custom/traces"  # the TRACES_ endpoint is used as it is
    assert request.headers["x-team"] == "traces" and "x-only-generic" not in request.headers
    assert not request.gzip


def test_resolution_of_every_variable(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("-")
    settings = resolve_otlp(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317/",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1500",
            "OTEL_EXPORTER_OTLP_CERTIFICATE": str(pem),
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": str(pem),
            "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(pem),
            "OTEL_EXPORTER_OTLP_HEADERS": "a=1%202,bad-entry",
        }
    )
    assert settings.endpoint == "http://collector:4317"  # gRPC: no /v1/traces
    assert settings.protocol == "grpc" and settings.timeout == 1.5
    assert settings.ca_file == settings.client_cert == settings.client_key == str(pem)
    assert settings.sources["CLIENT_CERTIFICATE"] == "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE"
    assert settings.headers == {"a": "1 2"}
    http = resolve_otlp({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert http.endpoint == "http://collector:4318/v1/traces" and http.protocol == "http/protobuf"


def test_http_json_and_bad_values_are_named(receiver: OTLPReceiver, run_python: RunPython) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "brotli",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "soon",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-key=ab%0D%0AInjected: 1",
        "TRACEROOT_FLUSH_INTERVAL": "0.2",
    }
    done = run_ok(run_python, env)
    receiver.wait_for_spans(20)  # sent as http/protobuf, gzip, with the default timeout
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/json is not supported" in done.stderr
    assert "invalid OTEL_EXPORTER_OTLP_COMPRESSION='brotli'" in done.stderr
    assert "invalid OTEL_EXPORTER_OTLP_TIMEOUT='soon'" in done.stderr
    assert "ignoring header 'x-key' in OTEL_EXPORTER_OTLP_HEADERS" in done.stderr
    assert "Injected" not in done.stderr and "injected" not in receiver.requests[0].headers
    assert receiver.requests[0].gzip


# -- delivery defects: fork after a first export, 413 everywhere, fast exit --------------

FORK_AFTER_EXPORT = """import os, sys, time
import traceroot
from traceroot import observe

@observe
def parent_span(i: int) -> int:
    return i

@observe
def child_span(blob: str) -> int:
    return len(blob)

for i in range(10):
    parent_span(i)
assert traceroot.flush(5)  # the parent now holds a kept-alive connection
start_at = time.time() + 0.5
pids = []
for c in range(4):
    pid = os.fork()
    if pid == 0:
        for i in range(100):
            child_span(os.urandom(1500).hex())
        time.sleep(max(0.0, start_at - time.time()))  # all export at the same moment
        ok = traceroot.flush(10)
        os._exit(0 if ok else 3)
    pids.append(pid)
for i in range(10, 60):
    parent_span(i)
time.sleep(max(0.0, start_at - time.time()))
traceroot.flush(10)
codes = [os.waitpid(pid, 0)[1] for pid in pids]
print("children", codes)
"""


def test_children_forked_after_an_export_use_their_own_connection(
    receiver: OTLPReceiver, run_python: RunPython
) -> None:
    # Large bodies, sent by five processes at the same moment: on a shared socket they
    # interleave, and the receiver sees garbage (a 400) where two requests were.
    env = traceroot_to(receiver.url, TRACEROOT_FLUSH_INTERVAL="30")
    done = run_python(FORK_AFTER_EXPORT, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "children [0, 0, 0, 0]\n", done.stderr
    spans = receiver.wait_for_spans(60 + 400, timeout=20)
    assert len(receiver.spans_named("child_span")) == 400
    assert len(receiver.spans_named("parent_span")) == 60
    assert max(Counter(s.span_id for s in spans).values()) == 1
    assert all(r.status == 200 for r in receiver.requests), "a body was garbled"
    assert "traceroot" not in done.stderr


BIG_BATCH = """
from traceroot import observe

@observe
def step(i: int) -> int:
    return i

for i in range(1000):
    step(i)
print("done")
"""


def test_a_backend_refusing_everything_with_413_costs_few_requests(
    receiver: OTLPReceiver, run_python: RunPython
) -> None:
    receiver.script([413] * 5000)
    env = traceroot_to(receiver.url, TRACEROOT_FLUSH_INTERVAL="30", TRACEROOT_FLUSH_AT="1000")
    done = run_python(BIG_BATCH, env=env)
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    # One batch of 1,000: halved down to one span, refused twice on its own, then given up.
    assert len(receiver.requests) <= 14, len(receiver.requests)
    refusals = [line for line in done.stderr.splitlines() if "(HTTP 413), even sent" in line]
    assert len(refusals) == 1 and "refused 1000 span(s) as too large" in refusals[0]
    # The exit report counts them and points back, without blaming the time.
    assert "1000 span(s) were not delivered" in done.stderr
    assert "1000 refused as too large (HTTP 413), reported above" in done.stderr
    assert "Exit waits" not in done.stderr


def test_one_oversized_span_is_dropped_and_the_rest_delivered(
    receiver: OTLPReceiver, run_python: RunPython
) -> None:
    # The first request (all 1,000) and every request holding span 0 is refused:
    # halving 1000 -> 500 -> ... -> 1 refuses 10 requests, then span 0 alone.
    receiver.script([413] * 11)
    env = traceroot_to(receiver.url, TRACEROOT_FLUSH_INTERVAL="30", TRACEROOT_FLUSH_AT="1000")
    done = run_python(BIG_BATCH, env=env)
    assert done.returncode == 0, done.stderr
    spans = receiver.wait_for_spans(999)
    assert len(spans) == 999
    assert "refused 1 span(s) as too large" in done.stderr
    assert "1 span(s) were not delivered" in done.stderr


@pytest.mark.parametrize("where", ["refused", "dns"])
def test_exit_does_not_wait_for_an_absent_backend(run_python: RunPython, where: str) -> None:
    url = dead_url() if where == "refused" else "http://no-such-host.invalid:4318"
    env = traceroot_to(url, TRACEROOT_SHUTDOWN_TIMEOUT="30")
    started = time.monotonic()
    done = run_ok(run_python, env)
    elapsed = time.monotonic() - started
    assert "20 span(s) were not delivered" in done.stderr
    assert "Exit waits" not in done.stderr
    if where == "refused":
        assert "is the backend running? check TRACEROOT_HOST_URL" in done.stderr
    else:
        assert "DNS lookup of no-such-host.invalid failed" in done.stderr
    assert_no_raw_bytes(done.stderr)
    assert elapsed < 15, f"exit took {elapsed:.1f}s: it waited for a backend that is not there"


def test_a_slow_backend_still_gets_the_shutdown_budget(
    receiver: OTLPReceiver, run_python: RunPython
) -> None:
    receiver.delay = 1.5  # alive, answering late
    env = traceroot_to(receiver.url, TRACEROOT_SHUTDOWN_TIMEOUT="10")
    done = run_ok(run_python, env)
    assert len(receiver.wait_for_spans(20)) == 20
    assert "not delivered" not in done.stderr


# -- --check takes the real path ------------------------------------------------------


def check(env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    result = launch(
        ["--no-env-file", "--check", "--integrations", "none"], program_env(env), tmp_path
    )
    return result.returncode, result.stdout + result.stderr


def test_check_goes_through_the_proxy_and_names_proxy_and_ca(
    tls_receiver: OTLPReceiver, ca: CA, tmp_path: Path
) -> None:
    with ConnectProxy(credentials=f"user:{PASSWORD}") as proxy:
        env = traceroot_to(
            tls_receiver.url,
            HTTPS_PROXY=proxy.url.replace("http://", f"http://user:{PASSWORD}@"),
            OTEL_EXPORTER_OTLP_CERTIFICATE=str(ca.ca_file),
        )
        code, out = check(env, tmp_path)
        assert code == 0, out
        assert [f.method for f in proxy.log] == ["CONNECT"]
        assert f"{proxy.url} (from HTTPS_PROXY, with credentials)" in out
        assert f"{ca.ca_file} (from OTEL_EXPORTER_OTLP_CERTIFICATE)" in out
        assert "accepted (HTTP 200" in out and PASSWORD not in out
        (span,) = tls_receiver.spans
        assert span.name == "traceroot-run --check"
        # The real path fails (the proxy wants credentials): so does the check.
        env["HTTPS_PROXY"] = proxy.url
        code, out = check(env, tmp_path)
    assert code == 1
    assert f"FAILED: the proxy {proxy.url} requires credentials (HTTP 407" in out
    assert_no_raw_bytes(out)


def test_check_fails_when_the_ca_is_missing(tls_receiver: OTLPReceiver, tmp_path: Path) -> None:
    code, out = check(traceroot_to(tls_receiver.url, **NO_CA_BUNDLES), tmp_path)
    assert code == 1
    assert "FAILED: TLS certificate of" in out and "not trusted" in out
    assert "the system's trusted certificates" in out


def test_check_names_requests_ca_bundle_when_it_is_the_ca(
    tls_receiver: OTLPReceiver, ca: CA, tmp_path: Path
) -> None:
    env = traceroot_to(tls_receiver.url, REQUESTS_CA_BUNDLE=str(ca.ca_file), CURL_CA_BUNDLE="")
    code, out = check(env, tmp_path)
    assert code == 0, out
    assert f"{ca.ca_file} (from REQUESTS_CA_BUNDLE)" in out


def test_check_against_a_grpc_port_speaks_in_words(tmp_path: Path) -> None:
    with GRPCReceiver() as grpc_port:
        code, out = check({"OTEL_EXPORTER_OTLP_ENDPOINT": grpc_port.url}, tmp_path)
    assert code == 1
    assert "it looks like a gRPC port (4317)" in out
    assert_no_raw_bytes(out)


def test_tls_context_is_verifying(ca: CA) -> None:
    # The transport never turns verification off, whatever the settings.
    from traceroot._export.transport import tls_context
    from traceroot._otlp_config import OTLPSettings

    context = tls_context(OTLPSettings(ca_file=str(ca.ca_file)), {})
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_a_connection_closed_without_an_answer_is_sent_again(
    receiver: OTLPReceiver, run_python: RunPython
) -> None:
    # A backend restarting, or a load balancer resetting the connection: the batch was read
    # and never answered. It was given up as "not an HTTP receiver", and lost.
    receiver.script([DROP])
    done = run_ok(run_python, traceroot_to(receiver.url))
    assert [r.status for r in receiver.requests[:2]] == [DROP, 200]
    assert len(receiver.wait_for_spans(20, timeout=5)) == 20
    assert "did not answer in HTTP" not in done.stderr
    assert "not delivered" not in done.stderr, done.stderr

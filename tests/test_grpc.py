"""OTLP/gRPC export (the `grpc` extra) against a real gRPC receiver on loopback."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from conftest import RunPython
from net_servers import GRPCReceiver, make_ca
from otlp_receiver import dead_url
from test_launcher import APPS, free_port, launch, program_env, serve_and_collect_pids, start, stop

pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc")

SMALL = """
from traceroot import observe

@observe
def step(i: int) -> int:
    return i

for i in range(20):
    step(i)
print("done")
"""


def grpc_env(url: str, **extra: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "TRACEROOT_FLUSH_INTERVAL": "0.2",
        **extra,
    }


def test_spans_arrive_over_grpc_with_the_headers(run_python: RunPython) -> None:
    with GRPCReceiver() as rx:
        env = grpc_env(rx.url, OTEL_EXPORTER_OTLP_HEADERS="x-team=abc")
        done = run_python(SMALL, env=env)
        assert done.returncode == 0 and done.stdout == "done\n", done.stderr
        spans = rx.wait_for_spans(20)
    assert sorted(s.attributes["traceroot.span.input"] for s in spans)[:1]
    assert rx.metadata[0]["x-team"] == "abc"
    assert "traceroot" not in done.stderr


def test_grpc_over_tls_with_the_certificate_variable(run_python: RunPython, tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    with GRPCReceiver(pems=ca.server_pems()) as rx:
        env = grpc_env(rx.url, OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE=str(ca.ca_file))
        done = run_python(SMALL, env=env)
        assert done.returncode == 0, done.stderr
        assert len(rx.wait_for_spans(20)) == 20


def test_an_endpoint_without_a_scheme_is_tls_unless_insecure(
    run_python: RunPython, tmp_path: Path
) -> None:
    """`host:port`, as OpenTelemetry's gRPC exporter takes it: TLS, or plain text with
    OTEL_EXPORTER_OTLP_INSECURE=true (it was refused as not being an OTLP/HTTP URL)."""
    with GRPCReceiver() as rx:
        assert rx.url.startswith("http://")
        bare = rx.url.removeprefix("http://")
        env = grpc_env(bare, OTEL_EXPORTER_OTLP_INSECURE="true")
        done = run_python(SMALL, env=env)
        assert done.returncode == 0 and done.stdout == "done\n", done.stderr
        assert len(rx.wait_for_spans(20)) == 20
        assert "traceroot" not in done.stderr
    ca = make_ca(tmp_path)
    with GRPCReceiver(pems=ca.server_pems()) as rx:
        assert rx.url.startswith("https://")
        env = grpc_env(
            rx.url.removeprefix("https://"), OTEL_EXPORTER_OTLP_CERTIFICATE=str(ca.ca_file)
        )
        done = run_python(SMALL, env=env)
        assert done.returncode == 0, done.stderr
        assert len(rx.wait_for_spans(20)) == 20
    checked = launch(
        ["--no-env-file", "--check", "--integrations", "none"],
        program_env(grpc_env("localhost:4317")),
        tmp_path,
    )
    assert re.search(r"traces go to +OTLP endpoint https://localhost:4317\n", checked.stdout)
    assert "/v1/traces" not in checked.stdout


def test_a_dead_grpc_port_is_reported_in_words_and_exit_does_not_wait(
    run_python: RunPython,
) -> None:
    env = grpc_env(dead_url(), TRACEROOT_SHUTDOWN_TIMEOUT="30")
    started = time.monotonic()
    done = run_python(SMALL, env=env)
    elapsed = time.monotonic() - started
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    assert "is the backend running? check OTEL_EXPORTER_OTLP_ENDPOINT" in done.stderr
    assert "20 span(s) were not delivered" in done.stderr
    assert "StatusCode" not in done.stderr and "Transient error" not in done.stderr
    assert elapsed < 20, f"exit took {elapsed:.1f}s"


def test_without_the_extra_one_warning_says_what_to_install(run_python: RunPython) -> None:
    # `sys.modules[name] = None` is how Python marks a module as not importable.
    script = "import sys\nsys.modules['opentelemetry.exporter.otlp.proto.grpc'] = None\n" + SMALL
    done = run_python(script, env=grpc_env("http://127.0.0.1:4317"))
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("traceroot:")]
    assert len(lines) == 1, done.stderr
    assert "pip install 'traceroot[grpc]'" in lines[0] and "4318" in lines[0]


FORK = """
import os
import traceroot
from traceroot import observe

@observe
def parent_span(i: int) -> int:
    return i

@observe
def child_span(i: int) -> int:
    return i

for i in range(10):
    parent_span(i)
assert traceroot.flush(10)  # the parent's channel is open now
pids = []
for c in range(3):
    pid = os.fork()
    if pid == 0:
        for i in range(30):
            child_span(i)
        os._exit(0 if traceroot.flush(15) else 3)
    pids.append(pid)
for i in range(10, 20):
    parent_span(i)
print("children", [os.waitpid(pid, 0)[1] for pid in pids])
"""


def test_children_forked_after_a_grpc_export_get_their_own_channel(
    run_python: RunPython,
) -> None:
    with GRPCReceiver() as rx:
        done = run_python(FORK, env=grpc_env(rx.url), timeout=90)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "children [0, 0, 0]\n", done.stderr
        spans = rx.wait_for_spans(20 + 90, timeout=20)
    assert len([s for s in spans if s.name == "child_span"]) == 90
    assert len({s.span_id for s in spans}) == len(spans)


def test_gunicorn_two_workers_over_grpc(tmp_path: Path) -> None:
    port = free_port()
    with GRPCReceiver() as rx:
        env = program_env(grpc_env(rx.url))
        proc = start(
            [
                "gunicorn",
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{port}",
                "--chdir",
                str(APPS),
                "wsgi_app:app",
            ],
            env,
            tmp_path,
        )
        try:
            pids = serve_and_collect_pids(proc, port, want=2)
        finally:
            stop(proc)
        assert proc.pid not in pids

        def outputs() -> set[int]:
            return {int(s.attributes["traceroot.span.output"]) for s in rx.spans}

        deadline = time.monotonic() + 15
        while not pids <= outputs() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pids <= outputs()


def test_check_over_grpc(tmp_path: Path) -> None:
    with GRPCReceiver() as rx:
        result = launch(
            ["--no-env-file", "--check", "--integrations", "none"],
            program_env(grpc_env(rx.url)),
            tmp_path,
        )
        out = result.stdout + result.stderr
        assert result.returncode == 0, out
        assert re.search(r"protocol +grpc \(OTLP/gRPC\)", out)
        assert "accepted (gRPC OK" in out
        assert [s.name for s in rx.spans] == ["traceroot-run --check"]
    assert os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") is None

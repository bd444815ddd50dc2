"""OTLP/gRPC export (the `grpc` extra) against a real gRPC receiver on loopback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import RunPython
from net_servers import GRPCReceiver, make_ca
from otlp_receiver import OTLPReceiver, dead_url
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


# The machine's CA settings: gRPC reads GRPC_DEFAULT_SSL_ROOTS_FILE_PATH itself, and its
# C core GRPC_VERBOSITY and GRPC_TRACE; each test below says which it wants.
_MACHINE_TLS = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "GRPC_VERBOSITY",
    "GRPC_TRACE",
)


def run_program(
    tmp_path: Path, url: str, script: str = SMALL, **extra: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """`traceroot-run python s.py` over gRPC to `url`; (the result, how long it took)."""
    env = program_env(grpc_env(url, **extra))
    for name in _MACHINE_TLS:
        if name not in extra:
            env.pop(name, None)
    (tmp_path / "s.py").write_text(script)
    started = time.monotonic()
    done = launch(["--no-env-file", "--integrations", "none", "python", "s.py"], env, tmp_path)
    return done, time.monotonic() - started


def only_traceroot_lines(stderr: str) -> list[str]:
    """The stderr lines, asserting that each is one of ours (no gRPC or OpenTelemetry line)."""
    lines = stderr.splitlines()
    assert lines and all(line.startswith("traceroot: ") for line in lines), stderr
    return lines


def test_an_untrusted_certificate_is_one_warning_in_words_and_exit_does_not_wait(
    tmp_path: Path,
) -> None:
    """gRPC's C core printed four `Handshake failed ... CERTIFICATE_VERIFY_FAILED` lines,
    the cause given was "the backend had not answered in time", and exit took the timeout."""
    ca = make_ca(tmp_path)
    with GRPCReceiver(pems=ca.server_pems()) as rx:
        done, elapsed = run_program(tmp_path, rx.url, TRACEROOT_SHUTDOWN_TIMEOUT="30")
        assert done.returncode == 0 and done.stdout == "done\n", done.stderr
        lines = only_traceroot_lines(done.stderr)
        problem = [line for line in lines if "not delivered" not in line]
        assert len(problem) == 1, done.stderr
        assert f"TLS certificate of 127.0.0.1:{rx.port} not trusted" in problem[0]
        assert "set OTEL_EXPORTER_OTLP_CERTIFICATE" in problem[0]
        assert "20 span(s) were not delivered" in done.stderr
        assert "had not answered" not in done.stderr and "Exit waits" not in done.stderr
        assert elapsed < 6, f"exit took {elapsed:.1f}s"
        assert rx.spans == []
        env = program_env(grpc_env(rx.url))
        for name in _MACHINE_TLS:
            env.pop(name, None)
        checked = launch(["--no-env-file", "--check", "--integrations", "none"], env, tmp_path)
        out = checked.stdout + checked.stderr
        assert "not trusted" in out and "OTEL_EXPORTER_OTLP_CERTIFICATE" in out, out
        assert "ssl_transport_security" not in out


def test_tls_and_plain_text_mixed_up_are_named_and_exit_does_not_wait(tmp_path: Path) -> None:
    """`host:port` (TLS) to a plain-text port printed `WRONG_VERSION_NUMBER` lines from gRPC
    and "Shutdown in progress, aborting retry." from OpenTelemetry, and waited the timeout."""
    with GRPCReceiver() as rx:
        bare = rx.url.removeprefix("http://")
        done, elapsed = run_program(tmp_path, bare, TRACEROOT_SHUTDOWN_TIMEOUT="30")
        assert done.returncode == 0 and done.stdout == "done\n", done.stderr
        problem = [
            line for line in only_traceroot_lines(done.stderr) if "not delivered" not in line
        ]
        assert len(problem) == 1, done.stderr
        assert f"{bare} speaks plain-text gRPC, not TLS: use http://" in problem[0]
        assert "OTEL_EXPORTER_OTLP_INSECURE=true" in problem[0]
        assert elapsed < 6, f"exit took {elapsed:.1f}s"
    ca = make_ca(tmp_path)
    with GRPCReceiver(pems=ca.server_pems()) as rx:  # and the reverse: http:// to TLS
        plain = rx.url.replace("https://", "http://")
        done, elapsed = run_program(tmp_path, plain, TRACEROOT_SHUTDOWN_TIMEOUT="30")
        assert done.returncode == 0 and done.stdout == "done\n", done.stderr
        problem = [
            line for line in only_traceroot_lines(done.stderr) if "not delivered" not in line
        ]
        assert len(problem) == 1 and "speaks TLS, not plain text: use https://" in problem[0]
        assert elapsed < 6, f"exit took {elapsed:.1f}s"


VERBOSITY = SMALL + "import os\nprint('GRPC_VERBOSITY', os.environ.get('GRPC_VERBOSITY'))\n"


def test_ssl_cert_file_and_ssl_cert_dir_are_trusted_over_grpc(tmp_path: Path) -> None:
    """`--check` said `CA certificates <ca.pem> (from SSL_CERT_FILE)`, but gRPC did not use it:
    "did not accept the spans within 10 s"."""
    ca = make_ca(tmp_path)
    with GRPCReceiver(pems=ca.server_pems()) as rx:
        done, _ = run_program(tmp_path, rx.url, VERBOSITY, SSL_CERT_FILE=str(ca.ca_file))
        assert done.returncode == 0, done.stderr
        # The program sees the environment it was given (GRPC_VERBOSITY is only gRPC's default).
        assert done.stdout == "done\nGRPC_VERBOSITY None\n", done.stderr
        assert "traceroot" not in done.stderr
        assert len(rx.wait_for_spans(20)) == 20
        env = program_env(grpc_env(rx.url, SSL_CERT_FILE=str(ca.ca_file)))
        for name in _MACHINE_TLS[1:]:
            env.pop(name, None)
        checked = launch(["--no-env-file", "--check", "--integrations", "none"], env, tmp_path)
        out = checked.stdout + checked.stderr
        assert f"{ca.ca_file} (from SSL_CERT_FILE)" in out and "accepted (gRPC OK" in out, out
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to name a certificate in a CA folder")
    folder = tmp_path / "certs"
    folder.mkdir()
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(ca.ca_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    shutil.copy(ca.ca_file, folder / f"{subject_hash}.0")
    with GRPCReceiver(pems=ca.server_pems()) as rx:
        done, _ = run_program(tmp_path, rx.url, SSL_CERT_DIR=str(folder))
        assert done.returncode == 0 and done.stdout == "done\n", done.stderr
        assert "traceroot" not in done.stderr
        assert len(rx.wait_for_spans(20)) == 20


def test_grpc_sent_to_an_otlp_http_port_says_so_and_does_not_wait(tmp_path: Path) -> None:
    """It waited out the timeout (5.8 s) and said "the backend had not answered in time"."""
    with OTLPReceiver() as rx:
        done, elapsed = run_program(tmp_path, rx.url, TRACEROOT_SHUTDOWN_TIMEOUT="30")
        assert done.returncode == 0 and done.stdout == "done\n", done.stderr
        problem = [
            line for line in only_traceroot_lines(done.stderr) if "not delivered" not in line
        ]
        assert len(problem) == 1, done.stderr
        assert "it looks like an OTLP/HTTP port" in problem[0]
        assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in problem[0] and "4318" in problem[0]
        assert "had not answered" not in done.stderr
        assert elapsed < 6, f"exit took {elapsed:.1f}s"
    ca = make_ca(tmp_path)
    with OTLPReceiver(ssl_context=ca.server_context()) as rx:  # OTLP/HTTP over TLS
        done, elapsed = run_program(
            tmp_path, rx.url, OTEL_EXPORTER_OTLP_CERTIFICATE=str(ca.ca_file)
        )
        assert done.returncode == 0 and done.stdout == "done\n", done.stderr
        assert "it looks like an OTLP/HTTP port" in only_traceroot_lines(done.stderr)[0]
        assert elapsed < 6, f"exit took {elapsed:.1f}s"

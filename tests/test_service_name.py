"""The service name stays the launched program's in every process it starts, workers included."""

from __future__ import annotations

from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver
from test_launcher import (
    APPS,
    assert_spans_from,
    free_port,
    launch,
    program_env,
    serve_and_collect_pids,
    start,
    stop,
)

from traceroot.cli.main import program_name


@pytest.fixture
def env(traceroot_env: dict[str, str]) -> dict[str, str]:
    return program_env(traceroot_env)


def test_uvicorn_workers_are_named_uvicorn(
    receiver: OTLPReceiver, env: dict[str, str], tmp_path: Path
) -> None:
    # uvicorn's workers are multiprocessing spawn children: `python -c ...` by their argv.
    port = free_port()
    proc = start(
        ["uvicorn", "--workers", "2", "--port", str(port), "--app-dir", str(APPS), "asgi_app:app"],
        env,
        tmp_path,
    )
    try:
        pids = serve_and_collect_pids(proc, port, want=2)
    finally:
        stop(proc)
    assert_spans_from(receiver, pids)
    assert {s.resource["service.name"] for s in receiver.spans} == {"uvicorn"}


@pytest.mark.parametrize(
    ("service", "expected"), [(None, {"mp"}), ("billing", {"billing"})], ids=["default", "otel"]
)
def test_spawned_children_keep_the_script_name_unless_otel_service_name_says(
    receiver: OTLPReceiver,
    env: dict[str, str],
    tmp_path: Path,
    service: str | None,
    expected: set[str],
) -> None:
    if service is not None:
        env["OTEL_SERVICE_NAME"] = service
    result = launch(["python", str(APPS / "mp.py"), "spawn"], env, tmp_path)
    assert (result.returncode, result.stdout) == (0, "done\n"), result.stderr
    spans = receiver.wait_for_spans(3, timeout=5)
    assert sorted(s.name for s in spans) == ["mp_child", "mp_child", "mp_parent"]
    assert {s.resource["service.name"] for s in spans} == expected


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["uvicorn", "app:app", "--workers", "2"], "uvicorn"),
        (["/venv/bin/gunicorn", "-w", "2", "app:app"], "gunicorn"),
        (["python", "agent.py", "--flag"], "agent"),
        (["python3.12", "-u", "-W", "ignore", "pkg/__main__.py"], "pkg"),
        (["python", "-m", "celery", "worker"], "celery"),
        (["python", "-mtraced_pkg"], "traced_pkg"),
        (["./tool.py"], "tool"),
        (["python", "-c", "print(1)"], None),
        (["python"], None),
    ],
)
def test_program_name_of_a_command_line(command: list[str], expected: str | None) -> None:
    assert program_name(command[0], command[1:]) == expected


AGENT = """
import traceroot

@traceroot.observe(name="agent")
def agent():
    return "ok"

agent()
print("done")
"""


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"TRACEROOT_SERVICE_NAME": "billing"}, "billing"),
        ({"TRACEROOT_SERVICE_NAME": "billing", "OTEL_SERVICE_NAME": "otel-wins"}, "otel-wins"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team=a,service.name=from%20attrs"}, "from attrs"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team=a"}, "agent"),
    ],
    ids=["traceroot", "otel-first", "resource-attributes", "program"],
)
def test_the_service_name_variables(
    receiver: OTLPReceiver,
    env: dict[str, str],
    tmp_path: Path,
    variables: dict[str, str],
    expected: str,
) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    result = launch(["python", "agent.py"], {**env, **variables}, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", "")
    (span,) = receiver.wait_for_spans(1, timeout=5)
    assert span.resource["service.name"] == expected
    # --check says the same (it showed the program's name unless OTEL_SERVICE_NAME was set).
    checked = launch(["--check", "--integrations", "none"], {**env, **variables}, tmp_path)
    shown = "the program's name (default)" if expected == "agent" else expected
    assert f"  OTEL_SERVICE_NAME            {shown}\n" in checked.stdout, checked.stdout


def test_traceroot_release_is_the_service_version(
    receiver: OTLPReceiver, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    result = launch(["python", "agent.py"], {**env, "TRACEROOT_RELEASE": "v1.2.3"}, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", "")
    (span,) = receiver.wait_for_spans(1, timeout=5)
    assert span.resource["service.version"] == "v1.2.3"
    # Unset, the resource has no version of ours (OTEL_RESOURCE_ATTRIBUTES may give one).
    receiver.clear()
    attrs = {**env, "OTEL_RESOURCE_ATTRIBUTES": "service.version=from-otel"}
    result = launch(["python", "agent.py"], attrs, tmp_path)
    assert result.returncode == 0, result.stderr
    (span,) = receiver.wait_for_spans(1, timeout=5)
    assert span.resource["service.version"] == "from-otel"


def test_traceroot_debug_prints_our_debug_log_on_stderr(
    receiver: OTLPReceiver, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    result = launch(["python", "agent.py"], {**env, "TRACEROOT_DEBUG": "true"}, tmp_path)
    assert (result.returncode, result.stdout) == (0, "done\n"), result.stderr
    assert "traceroot: debug log on (TRACEROOT_DEBUG)" in result.stderr
    assert "traceroot: sending traces to" in result.stderr  # an info line, shown too
    assert env.get("TRACEROOT_API_KEY", "") == "" or env["TRACEROOT_API_KEY"] not in result.stderr
    assert receiver.wait_for_spans(1, timeout=5)
    # Off by default; a wrong value names the variable and runs on without it.
    result = launch(["python", "agent.py"], {**env, "TRACEROOT_DEBUG": "maybe"}, tmp_path)
    assert (result.returncode, result.stdout) == (0, "done\n"), result.stderr
    assert "TRACEROOT_DEBUG" in result.stderr and "maybe" in result.stderr
    assert "debug log on" not in result.stderr


PARENT_AND_CHILD = """
import subprocess, sys
import traceroot

@traceroot.observe(name="parent")
def parent():
    subprocess.run([sys.executable, "agent.py"], check=True)

parent()
"""


def test_a_malformed_resource_attribute_is_named_once_in_our_words(
    receiver: OTLPReceiver, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    (tmp_path / "parent.py").write_text(PARENT_AND_CHILD)
    variables = {"OTEL_RESOURCE_ATTRIBUTES": "team=a,oops,service.version=2,"}
    result = launch(["python", "parent.py"], {**env, **variables}, tmp_path)
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    # Once for the two processes, naming the variable; OpenTelemetry's own words are silenced
    # (the trailing comma, harmless, went through them too).
    assert result.stderr == (
        "traceroot: ignoring 'oops' in OTEL_RESOURCE_ATTRIBUTES (expected key=value pairs "
        "separated by commas). Fix OTEL_RESOURCE_ATTRIBUTES.\n"
    )
    spans = receiver.wait_for_spans(2, timeout=5)
    assert {span.name for span in spans} == {"parent", "agent"}
    assert all(span.resource["team"] == "a" for span in spans)
    assert all(span.resource["service.version"] == "2" for span in spans)

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

"""``traceroot-run --check`` against real backends, and the launcher's parsing rules."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver, dead_url
from test_launcher import launch, program_env

from traceroot.cli._envfile import malformed_lines
from traceroot.cli.main import (
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
    LaunchError,
    resolve_program,
    site_blocking_flag,
    with_hook_on_pythonpath,
)

KEY = "tr-secret-key-0123456789"


def check(env: dict[str, str], tmp_path: Path, *args: str) -> tuple[int, str]:
    # Checking integrations imports every installed LLM library: slow, so done once.
    if "--integrations" not in args:
        args = ("--integrations", "none", *args)
    result = launch(["--no-env-file", "--check", *args], env, tmp_path)
    return result.returncode, result.stdout + result.stderr


def test_check_against_a_good_backend(receiver: OTLPReceiver, tmp_path: Path) -> None:
    env = program_env({"TRACEROOT_API_KEY": KEY, "TRACEROOT_HOST_URL": receiver.url})
    code, out = check(env, tmp_path, "--environment", "ci", "--integrations", "openai")
    assert code == 0, out
    assert KEY not in out and "tr-s...6789" in out  # masked
    assert receiver.url in out and "accepted (HTTP 200" in out
    assert re.search(r"openai +instrumented", out), out
    assert "Python" in out and "opentelemetry-sdk" in out
    (span,) = receiver.spans
    assert span.name == "traceroot-run --check"
    assert span.attributes["traceroot.environment"] == "ci"
    request = receiver.requests[0]
    assert request.path == "/api/v1/public/traces" and request.gzip
    assert request.headers["authorization"] == f"Bearer {KEY}"


def test_check_against_a_dead_backend(tmp_path: Path) -> None:
    url = dead_url()
    env = program_env({"TRACEROOT_API_KEY": KEY, "TRACEROOT_HOST_URL": url})
    code, out = check(env, tmp_path)
    assert code == 1
    assert "connection refused" in out and url.removeprefix("http://") in out


def test_check_reports_a_rejected_key(receiver: OTLPReceiver, tmp_path: Path) -> None:
    receiver.script([401])
    env = program_env({"TRACEROOT_API_KEY": KEY, "TRACEROOT_HOST_URL": receiver.url})
    code, out = check(env, tmp_path)
    assert code == 1 and "HTTP 401" in out and "TRACEROOT_API_KEY" in out


def test_check_reports_dns_failure(tmp_path: Path) -> None:
    env = program_env({"TRACEROOT_API_KEY": KEY, "TRACEROOT_HOST_URL": "http://host.invalid"})
    code, out = check(env, tmp_path)
    assert code == 1 and "DNS lookup of host.invalid failed" in out


def test_check_without_backend_or_disabled_is_not_well(tmp_path: Path) -> None:
    code, out = check(program_env(), tmp_path)
    assert code == 1 and "TRACEROOT_API_KEY" in out
    code, out = check(program_env({"TRACEROOT_API_KEY": KEY}), tmp_path, "--disabled")
    assert code == 1 and "disabled" in out


def test_check_lists_bad_values_as_problems(receiver: OTLPReceiver, tmp_path: Path) -> None:
    env = program_env(
        {
            "TRACEROOT_API_KEY": KEY,
            "TRACEROOT_HOST_URL": receiver.url,
            "TRACEROOT_FLUSH_AT": "many",
        }
    )
    code, out = check(env, tmp_path)
    assert code == 1 and "TRACEROOT_FLUSH_AT" in out


# -- parsing rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["-I", "app.py"], "-I"),
        (["-uE", "app.py"], "-E"),
        (["-W", "error", "-S", "app.py"], "-S"),
        (["-Werror", "-S"], "-S"),
        (["-X", "dev", "-c", "pass", "-I"], None),
        (["app.py", "-I"], None),
        (["-m", "mod", "-E"], None),
        (["-c", "pass", "-S"], None),
        (["--check-hash-based-pycs", "always", "-I"], "-I"),
        (["-"], None),
        ([], None),
    ],
)
def test_site_blocking_flag(args: list[str], flag: str | None) -> None:
    assert site_blocking_flag(args) == flag


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, ["HOOK"]),
        ("", ["HOOK"]),
        ("/a", ["HOOK", "/a"]),
        ("/a:HOOK:/b", ["HOOK", "/a", "/b"]),
        ("HOOK", ["HOOK"]),
        ("/a::/b", ["HOOK", "/a", "", "/b"]),  # the user's own empty entry is theirs
    ],
)
def test_with_hook_on_pythonpath(tmp_path: Path, given: str | None, expected: list[str]) -> None:
    hook = str(tmp_path)
    if given is not None:
        given = given.replace("HOOK", hook).replace(":", os.pathsep)
    result = with_hook_on_pythonpath(given, hook).split(os.pathsep)
    assert result == [hook if e == "HOOK" else e for e in expected]


def test_resolve_program(tmp_path: Path) -> None:
    runnable, plain = tmp_path / "runnable", tmp_path / "plain"
    runnable.write_text("#!/bin/sh\n")
    runnable.chmod(0o755)
    plain.write_text("#!/bin/sh\n")
    path = os.pathsep.join([str(tmp_path / "missing"), str(tmp_path)])
    assert resolve_program("runnable", path) == str(runnable)
    for program, code in [
        ("plain", EXIT_CANNOT_EXECUTE),
        ("nothing", EXIT_NOT_FOUND),
        (str(tmp_path), EXIT_CANNOT_EXECUTE),
        (str(tmp_path / "nothing"), EXIT_NOT_FOUND),
    ]:
        with pytest.raises(LaunchError) as raised:
            resolve_program(program, path)
        assert raised.value.code == code, program


def test_malformed_env_lines_have_line_numbers() -> None:
    text = "A=1\n# comment\n\nB C\nD='unterminated\nE=2\n\n\n  F G\n"
    assert malformed_lines(text) == [(4, "B C"), (5, "D='unterminated"), (9, "F G")]


def test_check_fails_when_a_named_integration_cannot_work(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    env = program_env({"TRACEROOT_API_KEY": KEY, "TRACEROOT_HOST_URL": receiver.url})
    code, out = check(env, tmp_path, "--integrations", "crewai")
    assert code == 1
    assert re.search(r"crewai +library not installed", out), out
    assert "crewai is named in TRACEROOT_INTEGRATIONS" in out


# -- secrets never shown ----------------------------------------------------------------


def test_check_never_shows_a_key_with_a_newline(tmp_path: Path) -> None:
    env = program_env({"TRACEROOT_API_KEY": "tr-newlinesecret42\nX-Injected: yes"})
    code, out = check(env, tmp_path)
    assert code == 1
    assert "newlinesecret42" not in out and "Injected" not in out
    assert "TRACEROOT_API_KEY" in out and "control character" in out


def test_check_never_shows_a_url_password_or_header_values(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    password_url = receiver.url.replace("http://", "http://user:hunter2pass@")
    env = program_env({"TRACEROOT_API_KEY": KEY, "TRACEROOT_HOST_URL": password_url})
    code, out = check(env, tmp_path)
    assert code == 0, out
    assert "hunter2pass" not in out and "user:***@" in out
    env = program_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=hcsecret0123456,"
            "proxy-authorization=Basic%20cHJveHlzZWNyZXQ=",
        }
    )
    code, out = check(env, tmp_path)
    assert code == 0, out
    assert "x-honeycomb-team" in out
    assert "hcsecret0123456" not in out and "cHJveHlzZWNyZXQ" not in out


def test_a_url_password_is_never_printed_by_the_running_program(tmp_path: Path) -> None:
    url = dead_url().replace("http://", "http://user:hunter2pass@")
    script = tmp_path / "app.py"
    script.write_text(
        "import traceroot\n"
        "client = traceroot.initialize()\n"
        "print(repr(client))\n"
        "@traceroot.observe\n"
        "def f():\n"
        "    return 1\n"
        "f()\n"
    )
    env = program_env(
        {
            "TRACEROOT_API_KEY": KEY,
            "TRACEROOT_HOST_URL": url,
            "TRACEROOT_SHUTDOWN_TIMEOUT": "1",
        }
    )
    result = launch(["--no-env-file", "python", str(script)], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "not delivered" in result.stderr  # the undelivered-spans warning names the host
    everything = result.stdout + result.stderr
    assert "hunter2pass" not in everything and KEY not in everything

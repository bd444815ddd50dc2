"""``traceroot-run --check`` against real backends, and the launcher's parsing rules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver, dead_url
from test_launcher import launch, program_env

from traceroot._local.store import Store
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
    # Integrations are judged from metadata; leaving them out keeps these tests about their
    # subject, whatever libraries this environment has (the tests below name theirs).
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
    assert re.search(r"openai +would instrument \(openai \d", out), out
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


def test_check_when_disabled_is_not_well(tmp_path: Path) -> None:
    code, out = check(program_env({"TRACEROOT_API_KEY": KEY}), tmp_path, "--disabled")
    assert code == 1 and "disabled" in out


def test_otel_sdk_disabled_is_one_warning_and_a_problem_in_the_check(
    tmp_path: Path, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    # CrewAI's docs suggest OTEL_SDK_DISABLED=true to silence its telemetry: it silences
    # every OpenTelemetry span, ours included, and the user must be told.
    env = program_env({**traceroot_env, "OTEL_SDK_DISABLED": "true"})
    program = tmp_path / "agent.py"
    program.write_text(
        "import traceroot\n\n@traceroot.observe()\ndef agent():\n    return 1\n\nprint(agent())\n"
    )
    result = launch(["python", str(program)], env, tmp_path)
    assert (result.returncode, result.stdout) == (0, "1\n"), result.stderr
    assert result.stderr.count("OTEL_SDK_DISABLED=true turns the OpenTelemetry SDK off") == 1
    assert "CREWAI_DISABLE_TELEMETRY=true" in result.stderr
    assert receiver.spans == []  # the warning's point: nothing was traced
    code, out = check(env, tmp_path)
    assert code == 1 and "OTEL_SDK_DISABLED=true" in out.split("Problems")[1], out


POOL_PROGRAM = """
import multiprocessing, sys
import traceroot
from traceroot import observe

if sys.argv[1] == "initialize":
    traceroot.initialize()

@observe()
def work(i):
    return i * 2

if __name__ == "__main__":
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        print(pool.map(work, range(6)))
"""


@pytest.mark.parametrize("how", ["launcher", "initialize"])
def test_a_pool_of_workers_warns_about_the_configuration_once(
    tmp_path: Path, receiver: OTLPReceiver, traceroot_env: dict[str, str], how: str
) -> None:
    # Every spawned worker starts traceroot again, from the same environment: a server's or
    # a pool's workers must not each repeat what the first process said.
    program = tmp_path / "pool.py"
    program.write_text(POOL_PROGRAM)
    env = program_env(
        {
            **traceroot_env,
            "TRACEROOT_FLUSH_INTERVAL": "soon",  # a configuration warning
            "TRACEROOT_INTEGRATIONS": "openai,bogus",  # the integrations' (launcher) warning
            "OTEL_SDK_DISABLED": "true",  # the SDK's, found again by each process
        }
    )
    argv = ["python", str(program), how]
    if how == "launcher":
        result = launch(argv, env, tmp_path)
    else:
        result = subprocess.run(
            [sys.executable, str(program), how], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "[0, 2, 4, 6, 8, 10]\n"), result.stderr
    assert result.stderr.count("invalid TRACEROOT_FLUSH_INTERVAL") == 1, result.stderr
    assert result.stderr.count("OTEL_SDK_DISABLED=true turns") == 1, result.stderr
    # TRACEROOT_INTEGRATIONS is the launcher's: initialize() alone does not read it.
    assert result.stderr.count("unknown integration 'bogus'") == (how == "launcher")


def test_check_in_local_mode_keeps_the_test_span_in_the_local_store(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    code, out = check(program_env({"TRACEROOT_LOCAL_DIR": str(directory)}), tmp_path)
    assert code == 0, out
    assert "Problems" not in out and "kept locally" in out
    path = directory / "traces.db"
    assert re.search(rf"local store +{re.escape(str(path))} \(browse with `traceroot ui`\)", out)
    trace_id = re.search(r"kept and read back \(trace ([0-9a-f]{32})\)", out)
    assert trace_id is not None, out
    stored = Store(path).trace(trace_id.group(1))  # what `traceroot ui` would show
    assert stored is not None
    (span,) = stored["spans"]
    assert span["name"] == "traceroot-run --check"
    assert span["attributes"]["traceroot.sdk.name"]


def test_check_in_local_mode_reports_an_unwritable_store(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, out = check(program_env({"TRACEROOT_LOCAL_DIR": str(blocker)}), tmp_path)
    assert code == 1, out
    assert "FAILED" in out and "TRACEROOT_LOCAL_DIR" in out
    assert "the test span was not kept in the local store" in out


def test_check_in_local_mode_with_the_store_off(tmp_path: Path) -> None:
    code, out = check(program_env({"TRACEROOT_LOCAL": "false"}), tmp_path)
    assert code == 0, out
    assert re.search(r"local store +off \(TRACEROOT_LOCAL=false\)", out)
    assert "only printed on the console" in out
    env = program_env({"TRACEROOT_LOCAL": "false", "TRACEROOT_CONSOLE": "false"})
    code, out = check(env, tmp_path)
    assert code == 1 and "traces go nowhere" in out and "TRACEROOT_API_KEY" in out


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


def test_malformed_env_lines_have_line_numbers_and_names_never_values() -> None:
    text = "A=1\n# comment\n\nB C\nD='unterminated\nE=2\n\n\n  F G\nAKIAIOSFODNN7EXAMPLE x\n"
    found = malformed_lines(text)
    assert [(line, name) for line, name, _ in found] == [
        (4, "B"),
        (5, "D"),
        (9, "F"),
        (10, None),  # a name shaped like a credential is not shown either
    ]
    assert "quote" in found[1][2]


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


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"]
)
def test_check_shows_the_header_names_in_the_configuration(
    receiver: OTLPReceiver, tmp_path: Path, variable: str
) -> None:
    """The Configuration section said `<not set>` while the headers were being sent."""
    env = program_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            variable: "x-honeycomb-team=hcsecret0123456,x-dataset=prod",
        }
    )
    code, out = check(env, tmp_path)
    assert code == 0, out
    (row,) = [line for line in out.splitlines() if "OTEL_EXPORTER_OTLP_TRACES_HEADERS" in line]
    assert "x-honeycomb-team, x-dataset (values hidden; from " + variable + ")" in row, row
    assert "hcsecret0123456" not in out
    assert receiver.requests[0].headers["x-honeycomb-team"] == "hcsecret0123456"


def test_check_says_an_api_key_wins_over_an_otlp_endpoint(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    env = program_env(
        {
            "TRACEROOT_API_KEY": KEY,
            "TRACEROOT_HOST_URL": receiver.url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": dead_url(),
            "OTEL_EXPORTER_OTLP_HEADERS": "x-team=hcsecret0123456",
        }
    )
    code, out = check(env, tmp_path)
    assert code == 0, out  # the precedence is by design: said, not a problem
    (row,) = [line for line in out.splitlines() if line.strip().startswith("not used")]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_HEADERS ignored" in row, row
    assert "unset TRACEROOT_API_KEY" in row
    assert receiver.requests[0].path == "/api/v1/public/traces"
    assert "hcsecret0123456" not in out


def test_check_names_a_generic_endpoint_ending_in_the_traces_path(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    value = f"{receiver.url}/v1/traces"
    code, out = check(program_env({"OTEL_EXPORTER_OTLP_ENDPOINT": value}), tmp_path)
    assert f"sent to {value}/v1/traces" in " ".join(out.split())
    problems = out.partition("Problems")[2]
    assert code == 1 and f"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={value}" in problems, out


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


# -- integrations judged from metadata ----------------------------------------------


def _fake_dist(site: Path, name: str, version: str, *, requires: str = "", entry: str = "") -> None:
    """A distribution's metadata folder, as pip would leave it."""
    folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True)
    lines = [f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires.splitlines() if r]
    (folder / "METADATA").write_text("Metadata-Version: 2.1\n" + "\n".join(lines) + "\n\nText.\n")
    if entry:
        (folder / "entry_points.txt").write_text(f"[opentelemetry_instrumentor]\n{entry}\n")


def _loud_package(site: Path, dotted: str, witness: Path) -> None:
    """A package whose import leaves ``witness`` behind and then fails."""
    folder = site
    for part in dotted.split("."):
        folder = folder / part
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").write_text(
            f"open({str(witness)!r}, 'a').write({part!r})\nraise RuntimeError('imported')\n"
        )


def _site_env(site: Path, overrides: dict[str, str] | None = None) -> dict[str, str]:
    env = program_env(overrides)
    env["PYTHONPATH"] = str(site)
    return env


def test_check_says_an_integration_would_instrument_without_importing_it(tmp_path: Path) -> None:
    site, witness = tmp_path / "site", tmp_path / "imported"
    _fake_dist(site, "crewai", "1.2.0")
    _loud_package(site, "crewai", witness)
    _fake_dist(
        site,
        "openinference-instrumentation-crewai",
        "1.5.0",
        requires="crewai>=1.0; extra == 'instruments'\nwrapt",
    )
    code, out = check(_site_env(site), tmp_path, "--integrations", "crewai")
    assert code == 0, out
    assert re.search(
        r"crewai +would instrument \(crewai 1\.2\.0, "
        r"openinference-instrumentation-crewai 1\.5\.0\)",
        out,
    ), out
    assert re.search(r"openai +not requested", out), out
    assert not witness.exists()


def test_check_reports_an_old_library_the_instrumentor_does_not_support(tmp_path: Path) -> None:
    site, witness = tmp_path / "site", tmp_path / "imported"
    _fake_dist(site, "crewai", "0.9.0")
    _loud_package(site, "crewai", witness)
    _fake_dist(
        site,
        "openinference-instrumentation-crewai",
        "1.5.0",
        requires="crewai>=1.0; extra == 'instruments'",
    )
    code, out = check(_site_env(site), tmp_path, "--integrations", "all")
    assert code == 1, out
    assert re.search(
        r"crewai +version not supported \(openinference-instrumentation-crewai 1\.5\.0 "
        r"instruments crewai>=1\.0; crewai 0\.9\.0 is installed\)",
        out,
    ), out
    assert "the crewai integration cannot work" in out
    assert not witness.exists()


def test_check_names_a_missing_instrumentor_and_never_imports_a_parent_package(
    tmp_path: Path,
) -> None:
    site, witness = tmp_path / "site", tmp_path / "imported"
    # The hook module is `llama_index.core`: finding it must not run `llama_index/__init__`.
    _fake_dist(site, "llama-index-core", "0.14.20")
    _loud_package(site, "llama_index.core", witness)
    code, out = check(_site_env(site), tmp_path, "--integrations", "llama_index")
    assert code == 1, out
    assert re.search(
        r"llama_index +instrumentor missing \(pip install 'traceroot\[llama-index\]'\)", out
    ), out
    assert "llama_index is named in TRACEROOT_INTEGRATIONS" in out
    assert not witness.exists()


def test_check_lists_opentelemetry_instrumentors_from_metadata(tmp_path: Path) -> None:
    site, witness = tmp_path / "site", tmp_path / "imported"
    _fake_dist(site, "fakeweb", "2.1.0")
    _loud_package(site, "fakeweb", witness)
    _loud_package(site, "fake_otel_fakeweb", witness)  # the instrumentor's own module
    _fake_dist(
        site,
        "fake-otel-instrumentation-fakeweb",
        "0.3.0",
        requires="fakeweb>=2; extra == 'instruments'",
        entry="fakeweb = fake_otel_fakeweb:FakewebInstrumentor",
    )
    _fake_dist(
        site,
        "fake-otel-instrumentation-ghost",
        "0.3.0",
        requires="ghostlib>=1; extra == 'instruments'",
        entry="ghostlib = fake_otel_ghost:GhostInstrumentor",
    )
    code, out = check(_site_env(site), tmp_path)
    assert code == 0, out
    assert re.search(
        r"fakeweb +would instrument \(fakeweb 2\.1\.0, fake-otel-instrumentation-fakeweb 0\.3\.0\)",
        out,
    ), out
    assert re.search(r"ghostlib +library not installed \(ghostlib\)", out), out
    assert re.search(r"openai +left to the LLM integration", out), out
    env = _site_env(site, {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "fakeweb"})
    code, out = check(env, tmp_path)
    assert re.search(r"fakeweb +disabled \(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS\)", out), out
    code, out = check(_site_env(site, {"TRACEROOT_OTEL_INSTRUMENTORS": "false"}), tmp_path)
    assert "fakeweb" not in out and "off (TRACEROOT_OTEL_INSTRUMENTORS=false)" in out
    assert not witness.exists()


def test_check_imports_no_instrumented_library(tmp_path: Path) -> None:
    """Every installed library is judged, none imported (some reach the network at import)."""
    program = (
        "import sys\n"
        "from traceroot.cli._check import run_check\n"
        "from traceroot._integrations import REGISTRY\n"
        "code = run_check({'TRACEROOT_LOCAL_DIR': sys.argv[1], 'PATH': ''})\n"
        "loaded = sorted(s.module for s in REGISTRY.values() if s.module in sys.modules)\n"
        "print('IMPORTED', loaded)\n"
    )
    env = program_env()
    result = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path / "store")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "IMPORTED []" in result.stdout, result.stdout + result.stderr
    assert re.search(r"openai +would instrument \(openai \d", result.stdout), result.stdout

"""End-to-end tests of ``traceroot-run``: real programs, a loopback OTLP receiver.

Spans are asserted as soon as the program has exited, without waiting: a short
program's spans must all have arrived by then.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from conftest import clean_env
from otlp_receiver import OTLPReceiver, ReceivedSpan

from traceroot.cli.main import HOOK_DIR

APPS = Path(__file__).parent / "apps"


def launcher(python: str = sys.executable) -> list[str]:
    """The ``traceroot-run`` of the environment ``python`` belongs to."""
    script = Path(python).parent / "traceroot-run"
    return [str(script)] if script.exists() else [python, "-m", "traceroot.cli"]


def program_env(
    overrides: Mapping[str, str] | None = None, python: str = sys.executable
) -> dict[str, str]:
    """A clean environment where ``python`` on PATH is ``python``."""
    env = clean_env(overrides)
    env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", os.defpath)])
    env.pop("PYTHONPATH", None)
    env.pop("TRACEPARENT", None)
    return env


def launch(
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    *,
    python: str = sys.executable,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``traceroot-run ARGS`` to completion."""
    return subprocess.run(
        [*launcher(python), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def by_name(spans: Sequence[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    out: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


@pytest.fixture
def env(traceroot_env: dict[str, str]) -> dict[str, str]:
    return program_env(traceroot_env)


def assert_plain_spans(receiver: OTLPReceiver) -> None:
    spans = by_name(receiver.spans)
    assert sorted(spans) == ["agent", "lookup"], receiver.spans
    (agent,), (lookup,) = spans["agent"], spans["lookup"]
    assert lookup.trace_id == agent.trace_id
    assert lookup.parent_span_id == agent.span_id
    assert agent.parent_span_id is None
    assert agent.attributes["traceroot.span.output"] == "HELLO!"


# -- ways of starting Python --------------------------------------------------


def test_plain_script_output_and_spans(receiver: OTLPReceiver, env: dict, tmp_path: Path) -> None:
    result = launch(["python", str(APPS / "plain.py")], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "HELLO!\n"
    assert result.stderr == "to stderr\n"  # nothing of ours when all is well
    assert_plain_spans(receiver)


def test_nonzero_exit_code_is_preserved(receiver: OTLPReceiver, env: dict, tmp_path: Path) -> None:
    result = launch(["python", str(APPS / "plain.py"), "3"], env, tmp_path)
    assert result.returncode == 3
    assert result.stdout == "HELLO!\n"
    assert_plain_spans(receiver)


def test_python_dash_m(receiver: OTLPReceiver, env: dict, tmp_path: Path) -> None:
    shutil.copytree(APPS / "traced_pkg", tmp_path / "traced_pkg")
    result = launch(["python", "-m", "traced_pkg"], env, tmp_path)
    assert (result.returncode, result.stdout) == (0, "from -m\n"), result.stderr
    assert [s.name for s in receiver.spans] == ["pkg_main"]


def test_console_script_entry_point(receiver: OTLPReceiver, env: dict, tmp_path: Path) -> None:
    # What pip writes for a [project.scripts] entry: a shebang to the interpreter.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(APPS / "plain.py", bin_dir / "plain_app.py")
    script = bin_dir / "plain-cli"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom plain_app import agent\n"
        "if __name__ == '__main__':\n    print(agent('hello'))\n    sys.exit(0)\n"
    )
    script.chmod(0o755)
    env["PATH"] = os.pathsep.join([str(bin_dir), env["PATH"]])
    result = launch(["plain-cli"], env, tmp_path)
    assert (result.returncode, result.stdout) == (0, "HELLO!\n"), result.stderr
    assert_plain_spans(receiver)


def test_arguments_after_program_belong_to_it(env: dict, tmp_path: Path) -> None:
    result = launch(["python", "-m", "http.server", "--help"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--bind" in result.stdout  # http.server's help, not ours
    args = ["--", "python", "-c", "import sys; print(sys.argv[1:])", "--check"]
    result = launch(args, env, tmp_path)
    assert result.stdout == "['--check']\n", result.stderr


# -- PYTHONPATH and sitecustomize ---------------------------------------------

SHOW_PATH = (
    "import os, sys; print(os.environ['PYTHONPATH']); "
    "print(os.getcwd() in sys.path[1:] or '' in sys.path[1:])"
)


@pytest.mark.parametrize("given", [None, "", "USER"])
def test_pythonpath_gets_hook_first_and_never_the_cwd(
    env: dict, tmp_path: Path, given: str | None
) -> None:
    user_dir, work_dir = tmp_path / "lib", tmp_path / "work"
    user_dir.mkdir()
    work_dir.mkdir()
    if given is not None:
        env["PYTHONPATH"] = str(user_dir) if given == "USER" else given
    result = launch(["python", "-c", SHOW_PATH], env, work_dir)
    expected = [HOOK_DIR, str(user_dir)] if given == "USER" else [HOOK_DIR]
    lines = result.stdout.splitlines()
    assert lines[0].split(os.pathsep) == expected, result.stderr
    # `python -c` puts '' first by itself; nothing may add the cwd after it.
    assert lines[1] == "False"


def test_user_sitecustomize_and_pythonpath_still_work(
    receiver: OTLPReceiver, env: dict, tmp_path: Path
) -> None:
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "sitecustomize.py").write_text("import sys\nsys.user_site_ran = True\n")
    (user_dir / "helper_mod.py").write_text("VALUE = 42\n")
    env["PYTHONPATH"] = str(user_dir)
    program = tmp_path / "prog.py"
    program.write_text(
        "import sys, sitecustomize, helper_mod\nfrom traceroot import observe\n"
        "@observe(name='with_user_site')\ndef f():\n    return helper_mod.VALUE\n"
        "print(f(), sys.user_site_ran, sitecustomize.__file__)\n"
    )
    result = launch(["python", str(program)], env, tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"42 True {user_dir / 'sitecustomize.py'}\n"
    (span,) = receiver.spans
    assert (span.name, span.attributes["traceroot.span.output"]) == ("with_user_site", 42)


def test_nested_launcher_initializes_once(
    receiver: OTLPReceiver, env: dict, tmp_path: Path
) -> None:
    env["PYTHONPATH"] = os.pathsep.join([HOOK_DIR, str(tmp_path)])
    result = launch([*launcher(), "python", str(APPS / "plain.py")], env, tmp_path)
    assert (result.returncode, result.stderr) == (0, "to stderr\n")
    assert_plain_spans(receiver)  # exactly one span each: one provider, one pipeline
    shown = launch([*launcher(), "python", "-c", SHOW_PATH], env, tmp_path).stdout
    assert shown.splitlines()[0].split(os.pathsep) == [HOOK_DIR, str(tmp_path)]


def test_user_initialize_gives_one_provider_and_no_duplicates(
    receiver: OTLPReceiver, env: dict, tmp_path: Path
) -> None:
    result = launch(["python", str(APPS / "explicit_init.py")], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == "True 1\n"
    assert [s.name for s in receiver.spans] == ["explicit"]


@pytest.mark.parametrize("how", ["--disabled", "TRACEROOT_ENABLED= False "])
def test_disabled_means_not_even_imported(
    receiver: OTLPReceiver, env: dict, tmp_path: Path, how: str
) -> None:
    args = [
        "python",
        "-c",
        "import sys; print(sorted(m for m in sys.modules if "
        "m.startswith(('traceroot', 'opentelemetry'))))",
    ]
    if how.startswith("--"):
        args.insert(0, how)
    else:
        name, _, value = how.partition("=")
        env[name] = value
    result = launch(args, env, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "[]\n", "")
    assert receiver.requests == []


@pytest.mark.parametrize("flag", ["-I", "-E", "-S", "-uS"])
def test_python_flags_that_skip_the_hook_warn_once(env: dict, tmp_path: Path, flag: str) -> None:
    result = launch(["python", flag, "-c", "print('ran')"], env, tmp_path)
    assert (result.returncode, result.stdout) == (0, "ran\n")
    (line,) = result.stderr.splitlines()
    assert flag[-1] in line and "untraced" in line


def test_script_whose_shebang_skips_the_hook_warns(env: dict, tmp_path: Path) -> None:
    script = tmp_path / "isolated-tool"
    script.write_text(f"#!{sys.executable} -I\nprint('ran')\n")
    script.chmod(0o755)
    result = launch([str(script)], env, tmp_path)
    assert (result.returncode, result.stdout) == (0, "ran\n")
    (line,) = result.stderr.splitlines()
    assert "-I" in line and "untraced" in line


def test_python_flags_that_keep_the_hook_do_not_warn(env: dict, tmp_path: Path) -> None:
    result = launch(["python", "-u", "-W", "ignore", "-c", "print('ran')", "-I"], env, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ran\n", "")


def test_interpreter_without_traceroot_runs_untraced_with_one_warning(
    receiver: OTLPReceiver, env: dict, tmp_path: Path
) -> None:
    # A fresh venv of the same Python, where traceroot is not installed.
    other = tmp_path / "other-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(other)], check=True)
    other_python = str(other / "bin" / "python")
    result = launch([other_python, "-c", "print('ran')"], env, tmp_path)
    assert (result.returncode, result.stdout) == (0, "ran\n")
    (line,) = result.stderr.splitlines()
    assert other_python in line and sys.executable in line and "untraced" in line
    assert "Traceback" not in result.stderr
    assert receiver.requests == []


# -- starting the program -------------------------------------------------------


def test_missing_program_exits_127(env: dict, tmp_path: Path) -> None:
    result = launch(["no-such-program-xyz", "arg"], env, tmp_path)
    assert result.returncode == 127
    assert result.stderr == "traceroot-run: no-such-program-xyz: command not found\n"


def test_non_executable_program_exits_126(env: dict, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    result = launch([str(script)], env, tmp_path)
    assert result.returncode == 126
    assert len(result.stderr.splitlines()) == 1 and "Permission denied" in result.stderr


def test_program_replaces_the_launcher(env: dict, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*launcher(), "python", "-c", "import os; print(os.getpid())"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=30)
    assert int(out) == proc.pid


# -- .env and options ------------------------------------------------------------

SHOW_ENV = (
    "import os; print(*(f'{k}={os.environ.get(k)}' for k in ("
    "'TRACEROOT_API_KEY', 'TRACEROOT_ENVIRONMENT', 'FROM_FILE', 'TRACEROOT_INTEGRATIONS', "
    "'OTEL_SERVICE_NAME', 'TRACEROOT_CONSOLE', 'TRACEROOT_HOST_URL')), sep='\\n')"
)


def shown_env(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_env_file_never_overrides_and_reports_bad_lines(env: dict, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "TRACEROOT_API_KEY=from-file\nFROM_FILE=yes\nthis line is bad\n"
        "TRACEROOT_ENVIRONMENT=${FROM_FILE}-env\n"
    )
    result = launch(["python", "-c", SHOW_ENV], env, tmp_path)
    assert result.returncode == 0
    shown = shown_env(result)
    assert shown["TRACEROOT_API_KEY"] == "test-key"  # already set: kept
    assert shown["FROM_FILE"] == "yes"
    assert shown["TRACEROOT_ENVIRONMENT"] == "yes-env"
    (line,) = result.stderr.splitlines()
    assert ".env line 3" in line and "line is bad" not in line  # the text is never shown

    skipped = launch(["--no-env-file", "python", "-c", SHOW_ENV], env, tmp_path)
    assert shown_env(skipped)["FROM_FILE"] == "None" and skipped.stderr == ""


def test_env_file_lines_that_cannot_be_parsed_never_show_their_values(
    env: dict, tmp_path: Path
) -> None:
    """The line's text was printed whole: `cannot parse 'TRACEROOT_API_KEY: tr-LEAK...'`."""
    (tmp_path / ".env").write_text(
        "TRACEROOT_API_KEY: tr-LEAKME123456789\n"
        "OPENAI_API_KEY sk-proj-LEAKME987654321\n"
        "FROM_FILE=yes\n"
        "export DB_PASSWORD='unterminated-LEAKME-3\n"
        "=sk-proj-LEAKME-nameless\n"
    )
    result = launch(["python", "-c", SHOW_ENV], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert shown_env(result)["FROM_FILE"] == "yes"
    assert "LEAKME" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 4, result.stderr
    assert ".env line 1" in lines[0] and "TRACEROOT_API_KEY" in lines[0]
    assert ".env line 2" in lines[1] and "OPENAI_API_KEY" in lines[1]
    assert ".env line 4" in lines[2] and "DB_PASSWORD" in lines[2] and "quote" in lines[2]
    assert ".env line 5" in lines[3] and "line skipped" in lines[3]
    assert all("value" in line and "not shown" in line for line in lines), lines


def test_env_file_option(env: dict, tmp_path: Path) -> None:
    other = tmp_path / "prod.env"
    other.write_text("FROM_FILE=prod\n")
    (tmp_path / ".env").write_text("FROM_FILE=default\n")
    result = launch(["--env-file", str(other), "python", "-c", SHOW_ENV], env, tmp_path)
    assert shown_env(result)["FROM_FILE"] == "prod"
    missing = launch(["--env-file", "nope.env", "true"], env, tmp_path)
    assert missing.returncode == 2 and "nope.env" in missing.stderr


def test_options_set_the_variables(receiver: OTLPReceiver, env: dict, tmp_path: Path) -> None:
    args = [
        "--api-key",
        "key-2",
        "--environment",
        "staging",
        "--service-name",
        "svc",
        "--integrations",
        "OpenAI,google-genai",
        "--no-console",
        "python",
        "-c",
        SHOW_ENV,
    ]
    shown = shown_env(launch(args, env, tmp_path))
    assert shown["TRACEROOT_API_KEY"] == "key-2"
    assert shown["TRACEROOT_ENVIRONMENT"] == "staging"
    assert shown["OTEL_SERVICE_NAME"] == "svc"
    assert shown["TRACEROOT_INTEGRATIONS"] == "openai,google_genai"
    assert shown["TRACEROOT_CONSOLE"] == "false"
    bad = launch(["--integrations", "openai,nope", "true"], env, tmp_path)
    assert bad.returncode == 2 and "nope" in bad.stderr

    result = launch(
        ["--service-name", "svc", "--environment", "staging", "python", str(APPS / "plain.py")],
        env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    agent = by_name(receiver.spans)["agent"][0]
    assert agent.resource["service.name"] == "svc"
    assert agent.attributes["traceroot.environment"] == "staging"
    assert receiver.requests[0].headers["authorization"] == "Bearer test-key"


def test_version_and_help(env: dict, tmp_path: Path) -> None:
    import traceroot

    version = launch(["--version"], env, tmp_path)
    assert version.returncode == 0 and traceroot.__version__ in version.stdout
    help_text = launch(["--help"], env, tmp_path).stdout
    for variable in (
        "TRACEROOT_API_KEY",
        "TRACEROOT_HOST_URL",
        "TRACEROOT_ENVIRONMENT",
        "OTEL_SERVICE_NAME",
        "TRACEROOT_INTEGRATIONS",
        "TRACEROOT_CONSOLE",
        "TRACEROOT_ENABLED",
    ):
        assert variable in help_text


# -- child processes ---------------------------------------------------------------


def assert_subprocess_trace(spans: Sequence[ReceivedSpan]) -> None:
    named = by_name(spans)
    (parent,) = named["parent"]
    for how in ("inherited", "explicit"):
        for name in (f"child_{how}", f"thread_{how}"):
            (child,) = named[name]
            assert child.trace_id == parent.trace_id, name
            assert child.parent_span_id == parent.span_id, name
            assert (
                child.attributes["traceroot.span.output"]
                != parent.attributes["traceroot.span.output"]
            )  # another process
    (outside,) = named["child_outside"]
    assert outside.trace_id != parent.trace_id and outside.parent_span_id is None


def test_subprocess_children_join_the_parent_trace(
    receiver: OTLPReceiver, env: dict, tmp_path: Path
) -> None:
    result = launch(["python", str(APPS / "subproc.py")], env, tmp_path)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert_subprocess_trace(receiver.spans)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children(
    receiver: OTLPReceiver, env: dict, tmp_path: Path, method: str
) -> None:
    result = launch(["python", str(APPS / "mp.py"), method], env, tmp_path)
    assert (result.returncode, result.stdout) == (0, "done\n"), result.stderr
    named = by_name(receiver.spans)
    (parent,) = named["mp_parent"]
    children = named["mp_child"]
    assert len(children) == 2  # each exactly once: nothing lost, nothing exported twice
    pids = {c.attributes["traceroot.span.output"] for c in children}
    assert len(pids) == 2 and parent.attributes["traceroot.span.output"] not in pids
    for child in children:
        assert (child.trace_id, child.parent_span_id) == (parent.trace_id, parent.span_id)


# -- shutdown --------------------------------------------------------------------------


def start(args: Sequence[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*launcher(), *args],
        env={**env, "PYTHONFAULTHANDLER": "1"},  # stacks on SIGABRT, should one hang
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("own_handler", [False, True])
def test_sigterm_flushes_a_long_running_program(
    receiver: OTLPReceiver, env: dict, tmp_path: Path, own_handler: bool
) -> None:
    env["TRACEROOT_FLUSH_INTERVAL"] = "60"  # only the SIGTERM flush can deliver them in time
    args = ["python", str(APPS / "long_running.py")] + (["--handler"] if own_handler else [])
    proc = start(args, env, tmp_path)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert sorted(s.name for s in receiver.spans) == ["tick"] * 3
    if own_handler:
        assert (proc.returncode, out) == (7, "handler ran\n"), err
    else:
        assert proc.returncode == -signal.SIGTERM, err  # still dies by the signal


class Blackhole:
    """A port that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.sock.close()


def test_dead_backend_delays_exit_at_most_the_bound(
    env: dict, tmp_path: Path, blackhole: Blackhole
) -> None:
    env.update(TRACEROOT_HOST_URL=blackhole.url, TRACEROOT_SHUTDOWN_TIMEOUT="1")
    started = time.monotonic()
    result = launch(["python", str(APPS / "plain.py"), "4"], env, tmp_path)
    elapsed = time.monotonic() - started
    # Without the bound the exporter would wait TRACEROOT_TIMEOUT (30 s) per attempt.
    assert elapsed < 1 + 5, elapsed
    assert (result.returncode, result.stdout) == (4, "HELLO!\n")
    assert result.stderr.startswith("to stderr\n")
    notice = result.stderr.removeprefix("to stderr\n")
    assert "2" in notice and "span" in notice, notice  # the count of spans not delivered


# -- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_and_collect_pids(
    proc: subprocess.Popen[str], port: int, want: int, deadline: float = 40
) -> set[int]:
    """Send concurrent requests until ``want`` worker pids answered (bounded); return them."""
    from concurrent.futures import ThreadPoolExecutor
    from urllib.request import urlopen

    def get(i: int) -> int | None:
        try:
            with urlopen(f"http://127.0.0.1:{port}/r{i}", timeout=5) as response:
                return int(response.read())
        except OSError:
            return None

    pids: set[int] = set()
    end = time.monotonic() + deadline
    with ThreadPoolExecutor(8) as pool:
        while len(pids) < want and time.monotonic() < end:
            assert proc.poll() is None, proc.communicate()
            pids |= {p for p in pool.map(get, range(16)) if p is not None}
            if not pids:
                time.sleep(0.2)
    assert len(pids) >= want, pids
    return pids


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM the server and wait for it; a server that does not stop fails with where it
    and its workers wait (their signal state, and their Python stacks by faulthandler)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        tree = [proc.pid, *descendants(proc.pid)]
        states = "\n".join(signal_state(pid) for pid in tree)
        for pid in reversed(tree):  # faulthandler (PYTHONFAULTHANDLER) dumps every thread
            try:
                os.kill(pid, signal.SIGABRT)
            except OSError:
                pass
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            err = "(no output after SIGABRT)"
        pytest.fail(f"the server did not stop within 30 s of SIGTERM\n{states}\n{err[-12000:]}")
    finally:
        proc.kill()


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), parents before children."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def signal_state(pid: int) -> str:
    """A process's and its threads' state, pending and blocked signals and kernel wait."""
    lines = []
    for task in (
        sorted(Path(f"/proc/{pid}/task").glob("*")) if Path(f"/proc/{pid}").exists() else []
    ):
        try:
            status = dict(
                line.split(":\t", 1)
                for line in (task / "status").read_text().splitlines()
                if ":\t" in line
            )
            wchan = (task / "wchan").read_text()
        except OSError:
            continue
        keys = ("Name", "State", "SigPnd", "ShdPnd", "SigBlk", "SigCgt")
        lines.append(
            f"{pid}/{task.name} "
            + " ".join(f"{k}={status.get(k, '?').strip()}" for k in keys)
            + f" wchan={wchan}"
        )
    return "\n".join(lines)


def assert_spans_from(receiver: OTLPReceiver, pids: set[int]) -> None:
    def outputs(r: OTLPReceiver) -> set[int]:
        return {s.attributes["traceroot.span.output"] for s in r.spans_named("handle")}

    received = receiver.wait_for(lambda r: got if pids <= (got := outputs(r)) else None)
    assert pids <= received
    ids = [s.span_id for s in receiver.spans]
    assert len(ids) == len(set(ids)), "a span was exported twice"


def test_gunicorn_two_workers(receiver: OTLPReceiver, env: dict, tmp_path: Path) -> None:
    port = free_port()
    proc = start(
        ["gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "--chdir", str(APPS), "wsgi_app:app"],
        env,
        tmp_path,
    )
    try:
        pids = serve_and_collect_pids(proc, port, want=2)
    finally:
        stop(proc)
    assert proc.pid not in pids  # the forked workers, not the master
    assert_spans_from(receiver, pids)


def test_uvicorn_two_workers(receiver: OTLPReceiver, env: dict, tmp_path: Path) -> None:
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


def test_uvicorn_reload_traces_the_serving_child(
    receiver: OTLPReceiver, env: dict, tmp_path: Path
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(APPS / "asgi_app.py", app_dir)
    port = free_port()
    proc = start(
        [
            "uvicorn",
            "--reload",
            "--reload-dir",
            str(app_dir),
            "--port",
            str(port),
            "--app-dir",
            str(app_dir),
            "asgi_app:app",
        ],
        env,
        tmp_path,
    )
    try:
        pids = serve_and_collect_pids(proc, port, want=1)
    finally:
        stop(proc)
    assert proc.pid not in pids  # served by the reloader's child
    assert_spans_from(receiver, pids)


def test_flask_debug_reloader_traces_the_serving_child(
    receiver: OTLPReceiver, env: dict, tmp_path: Path
) -> None:
    pytest.importorskip("flask")
    port = free_port()
    # The reloader's watcher re-runs the program in a child: stop the whole group after.
    proc = subprocess.Popen(
        [*launcher(), "flask", "--app", "flask_app", "run", "--debug", "--port", str(port)],
        env={**env, "PYTHONPATH": str(APPS)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        pids = serve_and_collect_pids(proc, port, want=1)
        assert proc.pid not in pids  # served by the reloader's child
        assert_spans_from(receiver, pids)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)


def serve_fastapi_service(env: Mapping[str, str], cwd: Path) -> tuple[subprocess.Popen[str], int]:
    """`traceroot-run uvicorn` serving apps/fastapi_service.py, once it listens; and its port."""
    port = free_port()
    server = start(
        ["uvicorn", "--app-dir", str(APPS), "--port", str(port), "fastapi_service:app"], env, cwd
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded wait for the server to listen
        assert server.poll() is None, server.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return server, port


def test_two_services_under_the_launcher_make_one_trace(
    receiver: OTLPReceiver, env: dict, tmp_path: Path
) -> None:
    pytest.importorskip("opentelemetry.instrumentation.fastapi")
    pytest.importorskip("opentelemetry.instrumentation.httpx")
    server, port = serve_fastapi_service(env, tmp_path)
    try:
        url = f"http://127.0.0.1:{port}/work"
        client = subprocess.run(
            [*launcher(), "python", str(APPS / "httpx_client.py"), url],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert client.returncode == 0 and client.stdout == "200\n", client.stderr
        spans = receiver.wait_for(
            lambda rx: rx.spans if any(s.kind == "SERVER" for s in rx.spans) else None
        )
    finally:
        stop(server)
    (observed,) = [s for s in spans if s.name == "client"]
    (http_call,) = [s for s in spans if s.kind == "CLIENT"]
    (served,) = [s for s in spans if s.kind == "SERVER"]
    assert http_call.parent_span_id == observed.span_id
    assert served.parent_span_id == http_call.span_id
    assert served.trace_id == http_call.trace_id == observed.trace_id
    assert served.attributes["traceroot.span.ids_path"] == [http_call.span_id]


@pytest.mark.parametrize("message_spans", [None, "true"])
def test_fastapi_request_is_one_server_span_unless_message_spans_asked_for(
    receiver: OTLPReceiver, env: dict, tmp_path: Path, message_spans: str | None
) -> None:
    pytest.importorskip("opentelemetry.instrumentation.fastapi")
    if message_spans is not None:
        env["TRACEROOT_ASGI_MESSAGE_SPANS"] = message_spans
    server, port = serve_fastapi_service(env, tmp_path)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/work", timeout=10) as got:
            assert got.read() == b'{"ok":true}'
    finally:
        stop(server)  # the final flush sends every span of the request
    names = sorted(s.name for s in receiver.spans)
    if message_spans is None:
        assert names == ["GET /work"]
    else:  # the response's start and its body
        assert names == ["GET /work", "GET /work http send", "GET /work http send"]


@pytest.mark.parametrize(("setting", "expected"), [(None, "True"), ("false", "False")])
def test_standard_instrumentors_follow_traceroot_otel_instrumentors(
    env: dict, tmp_path: Path, setting: str | None, expected: str
) -> None:
    pytest.importorskip("opentelemetry.instrumentation.httpx")
    if setting is not None:
        env["TRACEROOT_OTEL_INSTRUMENTORS"] = setting
    program = tmp_path / "uses_httpx.py"
    program.write_text(
        "import httpx\n"
        "from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor\n"
        "print(HTTPXClientInstrumentor().is_instrumented_by_opentelemetry)\n"
    )
    done = subprocess.run(
        [*launcher(), "python", str(program)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{expected}\n"

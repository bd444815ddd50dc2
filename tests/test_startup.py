"""What a process under ``traceroot-run`` loads before it traces, and that tracing still
starts complete when it does: at the first span, at the import of an instrumented library,
at the import of the OpenTelemetry API, in a forked child. Real launcher, real loopback
receiver; assertions are on what is imported, never on time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import clean_env
from fake_providers import FakeProviders
from otlp_receiver import OTLPReceiver

# What must wait for the first span: the SDK, our export pipeline, any instrumentor.
DEFERRED = ("opentelemetry.sdk", "traceroot._export.pipeline", "traceroot._sdk_client")
INSTRUMENTORS = ("openinference.", "opentelemetry.instrumentation.")


def launch(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "traceroot-run"
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "traceroot.cli"]
    program_env = clean_env(env)
    program_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), program_env["PATH"]])
    program_env.pop("PYTHONPATH", None)
    program_env.pop("TRACEPARENT", None)
    return subprocess.run(
        [*launcher, "python", "-c", textwrap.dedent(code)],
        env=program_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def loaded(prefixes: tuple[str, ...]) -> str:
    """Python source for the sorted list of loaded modules starting with one of `prefixes`."""
    return f"sorted(m for m in sys.modules if m.startswith({prefixes!r}))"


def test_a_process_that_makes_no_span_loads_no_sdk(
    traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    result = launch(
        "import sys; print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))",
        traceroot_env,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == "[]\n"
    # Nor our pipeline, nor any instrumentor, nor the OpenTelemetry API itself; the
    # import hooks are in place all the same.
    result = launch(
        f"""
        import sys
        from traceroot import _integrations as integrations
        print({loaded((*DEFERRED, *INSTRUMENTORS, "opentelemetry.trace"))})
        print(integrations.status()["openai"])
        """,
        traceroot_env,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.splitlines() == ["[]", "waiting for import"]


def test_the_first_span_starts_tracing_and_is_delivered(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    result = launch(
        f"""
        import sys
        before = {loaded(DEFERRED)}
        import traceroot

        @traceroot.observe(name="late")
        def late():
            return "ok"

        late()
        print(before, "opentelemetry.sdk.trace" in sys.modules)
        """,
        traceroot_env,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == "[] True\n"
    (span,) = receiver.spans
    assert (span.name, span.attributes["traceroot.span.output"]) == ("late", "ok")


def test_a_direct_opentelemetry_tracer_gets_our_provider(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    # What an instrumentor activated by entry point, or the program itself, does: take a
    # tracer from the global API, at import time, before traceroot has made any span.
    result = launch(
        """
        from opentelemetry import trace

        tracer = trace.get_tracer("direct.user")
        provider = trace.get_tracer_provider()
        with tracer.start_as_current_span("direct") as span:
            print(type(provider).__module__.startswith("traceroot"), span.is_recording())
        """,
        traceroot_env,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == "True True\n"
    (span,) = receiver.spans
    assert span.name == "direct"


def test_an_instrumented_import_loads_its_instrumentor_with_the_sdk(
    traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    # Anthropic's instrumentor wraps methods below the client's one entry point: it is
    # instrumented at the import. (The standard instrumentors are off: the test venv's
    # httpx one would start tracing at httpx's import.)
    pytest.importorskip("anthropic")
    result = launch(
        f"""
        import sys
        before = {loaded(("opentelemetry.sdk", "openinference."))}
        import anthropic
        from traceroot import _integrations as integrations
        print(before, "opentelemetry.sdk.trace" in sys.modules, integrations.status()["anthropic"])
        """,
        {**traceroot_env, "TRACEROOT_OTEL_INSTRUMENTORS": "false"},
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == "[] True instrumented\n"


def test_openai_imported_is_instrumented_at_its_first_call(
    receiver: OTLPReceiver,
    traceroot_env: dict[str, str],
    tmp_path: Path,
    providers: FakeProviders,
) -> None:
    # Imported and given a client, openai loads nothing of tracing; the first calls, from
    # three threads at once and from an async client, are each traced exactly once.
    pytest.importorskip("openai")
    result = launch(
        f"""
        import asyncio, sys, threading
        import openai
        from traceroot import _integrations as integrations

        client = openai.OpenAI(base_url={providers.url!r} + "/v1", api_key="k", max_retries=0)
        print({loaded(("opentelemetry", "openinference.", "traceroot._export"))})
        print(integrations.status()["openai"])

        def call(model):
            client.chat.completions.create(
                model=model, messages=[{{"role": "user", "content": "hi"}}]
            )

        threads = [threading.Thread(target=call, args=(f"m{{i}}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        async def main():
            aclient = openai.AsyncOpenAI(
                base_url={providers.url!r} + "/v1", api_key="k", max_retries=0
            )
            await aclient.chat.completions.create(
                model="async", messages=[{{"role": "user", "content": "hi"}}]
            )

        asyncio.run(main())
        call("again")
        print(integrations.status()["openai"])
        """,
        {**traceroot_env, "TRACEROOT_OTEL_INSTRUMENTORS": "false"},
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.splitlines() == ["[]", "waiting for first call", "instrumented"]
    spans = receiver.wait_for_spans(5)
    models = sorted(s.attributes.get("llm.model_name") for s in spans)
    assert models == ["again", "async", "m0", "m1", "m2"]
    assert {s.scope_name for s in spans} == {"openinference.instrumentation.openai"}


def test_a_child_forked_before_any_span_traces_on_its_own(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    result = launch(
        f"""
        import json, multiprocessing, sys

        def child(queue):
            queue.put({loaded(DEFERRED)})  # inherited from a parent that never traced
            import traceroot

            @traceroot.observe(name="forked_child")
            def work():
                return "child"

            work()

        if __name__ == "__main__":
            context = multiprocessing.get_context("fork")
            queue = context.Queue()
            process = context.Process(target=child, args=(queue,))
            process.start()
            print(json.dumps(queue.get()))
            process.join()
            print(process.exitcode, "opentelemetry.sdk.trace" in sys.modules)
        """,
        traceroot_env,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    first, second = result.stdout.splitlines()
    assert json.loads(first) == []
    assert second == "0 False"  # the parent itself never started tracing
    (span,) = receiver.spans
    assert (span.name, span.attributes["traceroot.span.output"]) == ("forked_child", "child")


def test_an_instrumented_import_does_not_wait_for_a_start_under_way(
    receiver: OTLPReceiver,
    traceroot_env: dict[str, str],
    tmp_path: Path,
    providers: FakeProviders,
) -> None:
    # Thread "starter" makes the first span; while it loads the SDK (held there by a
    # finder until the other import is over), thread "importer" imports openai. The
    # importer must not wait for the start (the starter may need a module the importer is
    # inside: a deadlock); openai is instrumented once tracing has started.
    pytest.importorskip("openai")
    result = launch(
        f"""
        import sys, threading
        import traceroot

        loading = threading.Event()
        imported = threading.Event()
        waited = []

        class Held:
            # Runs the SDK module only once the other import is over. (Not in
            # find_spec: Python calls that under its global import lock.)
            def __init__(self, loader):
                self.loader = loader

            def create_module(self, spec):
                return self.loader.create_module(spec)

            def exec_module(self, module):
                loading.set()
                waited.append(imported.wait(20))
                self.loader.exec_module(module)

        class Gate:
            def find_spec(self, name, path=None, target=None):
                if name != "opentelemetry.sdk.trace" or (
                    threading.current_thread().name != "starter"
                ):
                    return None
                from importlib.machinery import PathFinder

                spec = PathFinder.find_spec(name, path)
                spec.loader = Held(spec.loader)
                return spec

        sys.meta_path.insert(0, Gate())

        def first():
            @traceroot.observe(name="first")  # here: it loads the OpenTelemetry API
            def work():
                return "ok"

            work()

        def importer():
            loading.wait(20)
            import openai

            imported.set()

        threads = [
            threading.Thread(target=first, name="starter"),
            threading.Thread(target=importer, name="importer"),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        import openai

        client = openai.OpenAI(base_url={providers.url!r} + "/v1", api_key="k", max_retries=0)
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}]
        )
        print(waited)
        """,
        traceroot_env,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == "[True]\n"  # the import finished while the start was under way
    names = sorted(span.name for span in receiver.spans)
    assert "first" in names
    llm = [s for s in receiver.spans if s.attributes.get("openinference.span.kind") == "LLM"]
    assert len(llm) == 1, names


# Loaded by nothing the hook needs: each costs a process that never traces milliseconds.
HEAVY = (
    "typing",
    "logging",
    "dataclasses",
    "inspect",
    "re",
    "urllib.parse",
    "threading",
    "signal",
    "enum",
    "weakref",
    "importlib.util",
    "importlib.metadata",
    "click",
    "traceroot._config",
    "traceroot._integrations",
    "opentelemetry",
)
MODULES = "import sys; print(' '.join(sorted(sys.modules)))"


def bare_modules(env: dict[str, str], cwd: Path) -> set[str]:
    """What this interpreter loads for `python -c` without the hook."""
    bare = subprocess.run(
        [sys.executable, "-c", MODULES],
        env=clean_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(bare.stdout.split())


def test_a_process_that_makes_no_span_loads_nothing_but_the_hook(
    traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    # The launcher found the modules to watch and checked the configuration once: the
    # program's process reads neither again, and installs its hooks with what Python has.
    result = launch(MODULES, traceroot_env, tmp_path)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    added = set(result.stdout.split()) - bare_modules(traceroot_env, tmp_path)
    assert {m for m in added if not m.startswith("traceroot")} <= {
        "sitecustomize",
        "atexit",
        "__future__",
    }
    assert not added & set(HEAVY), sorted(added & set(HEAVY))


def test_the_launcher_runs_a_program_without_loading_click(
    traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    env = clean_env(traceroot_env)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "traceroot.cli", sys.executable, "-c", "pass"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "traceroot.cli.main" in imported  # the launcher's own imports are listed
    assert not imported & {"click", "traceroot._sdk_client", "opentelemetry.sdk"}


@pytest.mark.parametrize("watch", [None, "a stale key|json"])
def test_a_process_with_only_the_hook_on_its_path_finds_what_to_watch_itself(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path, watch: str | None
) -> None:
    # An inherited PYTHONPATH (no launcher), or what a launcher found for another
    # environment: the process lists the instrumented libraries itself, as it used to.
    pytest.importorskip("openai")
    from traceroot.cli.main import HOOK_DIR

    env = clean_env(traceroot_env)
    env["PYTHONPATH"] = HOOK_DIR
    # Without the standard instrumentors (the test venv's httpx one would start tracing at
    # httpx's import): openai, imported before tracing starts, then waits for its first call.
    env["TRACEROOT_OTEL_INSTRUMENTORS"] = "false"
    if watch is not None:
        env["TRACEROOT_WATCH"] = watch
    code = """
        import openai
        import traceroot
        from traceroot import _integrations as integrations

        @traceroot.observe(name="unlaunched")
        def work():
            return integrations.status()["openai"]

        print(work())
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == "waiting for first call\n"  # seen imported: not "waiting for import"
    (span,) = receiver.spans
    assert span.name == "unlaunched"


CHILDREN = """
    import subprocess, sys
    import traceroot

    @traceroot.observe(name="parent")
    def parent():
        for _ in range(2):
            subprocess.run([sys.executable, "-c", {child!r}], check=True)

    parent()
    """
CHILD = "import traceroot; traceroot.observe(name='child')(lambda: 1)()"


def test_a_bad_setting_is_reported_once_not_by_every_process(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**traceroot_env, "TRACEROOT_MAX_QUEUE_SIZE": "many"}
    result = launch(CHILDREN.format(child=CHILD), env, tmp_path)
    assert result.returncode == 0, result.stderr
    # Said by the launcher, naming the variable, the value and the fix; not by the three
    # processes that read the configuration after it.
    assert result.stderr.count("traceroot: invalid TRACEROOT_MAX_QUEUE_SIZE='many'") == 1
    assert "Fix or unset TRACEROOT_MAX_QUEUE_SIZE" in result.stderr
    assert sorted(span.name for span in receiver.spans) == ["child", "child", "parent"]


def test_without_the_launcher_the_first_process_reports_a_bad_setting(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    from traceroot.cli.main import HOOK_DIR

    env = clean_env({**traceroot_env, "TRACEROOT_MAX_QUEUE_SIZE": "many"})
    env["PYTHONPATH"] = HOOK_DIR
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILDREN.format(child=CHILD))],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("traceroot: invalid TRACEROOT_MAX_QUEUE_SIZE='many'") == 1
    assert sorted(span.name for span in receiver.spans) == ["child", "child", "parent"]


def test_sigterm_flushes_a_program_that_never_imports_signal(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    # The hook sets the handler without loading `signal`; the program dies by the signal
    # all the same, its span delivered first.
    result = launch(
        """
        import os, sys, time
        import traceroot

        traceroot.observe(name="before_sigterm")(lambda: 1)()
        print("signal" in sys.modules, flush=True)
        os.kill(os.getpid(), 15)
        time.sleep(30)
        """,
        traceroot_env,
        tmp_path,
    )
    assert result.returncode == -15, result.stderr
    # Tracing ran without `signal` loaded, unless the OpenTelemetry SDK loads it itself
    # (1.30 does, through asyncio): then the case is one the other SIGTERM tests cover.
    sdk_loads_signal = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, opentelemetry.sdk.trace; print('signal' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert result.stdout == ("True\n" if sdk_loads_signal == "True\n" else "False\n")
    assert [span.name for span in receiver.spans] == ["before_sigterm"]


def test_signal_imported_later_sees_what_it_would_without_us(
    traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    code = """
        import signal
        print(repr(signal.getsignal(signal.SIGTERM)))
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(repr(previous), repr(signal.getsignal(signal.SIGTERM)))
        """
    bare = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=clean_env(traceroot_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = launch(code, traceroot_env, tmp_path)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == bare.stdout
    assert "SIG_DFL" in bare.stdout


def test_naming_the_client_class_before_any_span_starts_tracing_cleanly(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    # The class's module imports the OpenTelemetry API as it loads: tracing starts once that
    # module is complete, not half-way through it (which failed, and said so twice).
    result = launch(
        """
        import traceroot

        print(traceroot.TraceRootClient.__name__)
        traceroot.observe(name="after_the_class")(lambda: 1)()
        """,
        traceroot_env,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == "TraceRootClient\n"
    assert [span.name for span in receiver.spans] == ["after_the_class"]

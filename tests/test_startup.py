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
    pytest.importorskip("openai")
    result = launch(
        f"""
        import sys
        before = {loaded(("opentelemetry.sdk", "openinference."))}
        import openai
        from traceroot import _integrations as integrations
        print(before, "opentelemetry.sdk.trace" in sys.modules, integrations.status()["openai"])
        """,
        traceroot_env,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == "[] True instrumented\n"


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
    receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    # Thread "starter" makes the first span; while it loads the SDK (held there by a
    # finder until the other import is over), thread "importer" imports openai. The
    # importer must not wait for the start (the starter may need a module the importer is
    # inside: a deadlock); openai is instrumented once tracing has started.
    pytest.importorskip("openai")
    from fake_providers import FakeProviders

    with FakeProviders() as fake:
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

            client = openai.OpenAI(base_url={fake.url!r} + "/v1", api_key="k", max_retries=0)
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

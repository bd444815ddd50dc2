"""Side-by-side benchmark: traceroot against plain OpenTelemetry, the reference TraceRoot SDK
0.5.0 and Langfuse, on this machine, in one run, as ratios.

    python benchmarks/run.py                     # about 8 minutes; the first run also builds
                                                 # the venvs (about 2 minutes more)
    python benchmarks/run.py --baseline-rev REV  # also traceroot at git revision REV
    python benchmarks/run.py --quick             # a smoke run: small, one repetition
    python benchmarks/run.py --instructions      # also count instructions (valgrind),
                                                 # about 12 minutes more

1. Burst: 200 root calls x 100 child calls (20,200 spans), one thread, as fast as it can,
   each contender in its own process, all sending OTLP/HTTP to the same loopback receiver
   (in this process; it only counts spans). Cost per span = wall time of the whole
   program (start-up, calls, export, flush at exit) / spans made; the calling thread's
   CPU time per call is measured inside the program.
2. Start-up: `python -c pass` and a program that imports openai, bare, under
   `traceroot-run` and under `opentelemetry-instrument`; and `python -c pass` with the
   hook on its path (the environment traceroot-run gives a program's subprocesses).
3. Peak memory: max RSS of each program above, from os.wait4.
4. Server: a FastAPI app (an `@observe` agent, a tool, an OpenAI call to a loopback fake)
   under `traceroot-run uvicorn` against the same app under plain uvicorn, a steady load at
   concurrency 16: throughput, p50/p99 latency, RSS after the warm-up and at the end.
5. Instructions (--instructions): the burst programs and the server's requests counted by
   valgrind's callgrind, where timings on a shared machine are too noisy to tell two
   revisions apart.

Each contender has its own virtual environment under benchmarks/.venvs/ (built from scratch
with `python -m venv` + pip, rebuilt when its requirements change): ours (this repository's
working tree, a wheel installed with its dependencies, the package reinstalled at every
run), with --baseline-rev the same for that revision (`git archive` of the commit, built
once), the reference (`traceroot==0.5.0`, same import name), langfuse, plain OpenTelemetry,
and plain OpenTelemetry with the OpenInference OpenAI instrumentor. Results are printed and
written to benchmarks/results.md (not by --quick).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import functools
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PROGRAMS = HERE / "programs"
VENVS = HERE / ".venvs"
sys.path.insert(0, str(REPO / "tests"))

import instructions  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)
from otlp_receiver import OTLPReceiver  # noqa: E402

ROOTS, CHILDREN = 200, 100
SIZED_QUEUE = 32768  # >= 20,200: the plain pipeline's queue sized to deliver the whole burst
CHILD_TIMEOUT = 180.0  # seconds; a child still running then is killed and its run reported failed


# --------------------------------------------------------------------------- environments


@dataclass(frozen=True)
class VenvSpec:
    name: str
    requirements: tuple[str, ...]
    versions_of: tuple[str, ...]  # distributions whose versions the results show
    # Also traceroot itself, installed as users install it (a built wheel with its
    # dependencies; not `pip install -e`, whose import hook every process would pay for):
    # "tree" is this repository's working tree, reinstalled at every run; a full commit
    # hash is that revision, exported with `git archive` and built once.
    ours: str | None = None

    def fingerprint(self) -> str:
        text = json.dumps([self.requirements, self.ours, sys.version_info[:2]])
        if self.ours == "tree":  # rebuild when our own dependencies change
            text += (REPO / "pyproject.toml").read_text()
        return hashlib.sha256(text.encode()).hexdigest()[:16]


OTEL_REQUIREMENTS = (
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-distro",
    "opentelemetry-instrumentation",
    "openai",  # for the start-up program; nothing instruments it in this venv
)
# What our own venvs need beyond traceroot's dependencies: the start-up program (openai)
# and the server benchmark's app (fastapi, uvicorn).
OURS_REQUIREMENTS = ("openai", "fastapi", "uvicorn")
OURS_VERSIONS = ("traceroot", "opentelemetry-sdk", "openai", "fastapi", "uvicorn")
VENV_SPECS = (
    VenvSpec("traceroot", OURS_REQUIREMENTS, OURS_VERSIONS, ours="tree"),
    VenvSpec("ref", ("traceroot==0.5.0", "openai"), ("traceroot",)),
    VenvSpec("langfuse", ("langfuse",), ("langfuse", "opentelemetry-sdk")),
    VenvSpec("otel", OTEL_REQUIREMENTS, ("opentelemetry-sdk", "opentelemetry-instrumentation")),
    # The same OpenAI instrumentor traceroot-run activates: `opentelemetry-instrument` then
    # does the same work on the openai program (it also imports openai for `-c pass`).
    VenvSpec(
        "otel-openai",
        (*OTEL_REQUIREMENTS, "openinference-instrumentation-openai"),
        ("openinference-instrumentation-openai",),
    ),
)
BASELINE = "before"  # the venv and contender key suffix of --baseline-rev


def baseline_spec(commit: str) -> VenvSpec:
    """Our venv for an earlier revision (`commit`: a full hash), built once per revision."""
    return VenvSpec(BASELINE, OURS_REQUIREMENTS, OURS_VERSIONS, ours=commit)


def resolve_revision(rev: str) -> tuple[str, str]:
    """(full hash, short hash) of `rev` in this repository; SystemExit if it names none."""
    try:
        full = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        raise SystemExit(f"--baseline-rev {rev}: not a commit of this repository") from None
    return full, full[:7]


@dataclass
class Venv:
    spec: VenvSpec
    path: Path
    versions: dict[str, str]

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> str:
        return str(self.bin / "python")


def _pip(python: Path, args: Sequence[str], log: Path, command: str = "install") -> None:
    cmd = [str(python), "-m", "pip", command, "--disable-pip-version-check", *args]
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    if done.returncode != 0:
        tail = log.read_text().splitlines()[-20:]
        raise SystemExit(f"pip failed for {python} (log {log}):\n" + "\n".join(tail))


def _build_wheel(python: Path, ours: str, out_dir: Path, log: Path) -> Path:
    """A wheel of traceroot: of the working tree ("tree") or of commit `ours`."""
    if ours == "tree":
        # setuptools' build/ keeps files deleted from the tree: a stale one would ship.
        shutil.rmtree(REPO / "build", ignore_errors=True)
        source = REPO
    else:
        # The committed tree only, never this checkout's files: a clean export of the commit.
        source = out_dir / "src"
        source.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", ours],
            capture_output=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(source, filter="data")
    _pip(python, ["-q", "--no-deps", "-w", str(out_dir), str(source)], log, command="wheel")
    wheels = sorted(out_dir.glob("traceroot-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"building traceroot from {ours} made {len(wheels)} wheels (log {log})")
    return wheels[0]


def ensure_venv(spec: VenvSpec) -> Venv:
    """Create (once) the venv for `spec`, from scratch; rebuilt when its requirements change.

    Ours gets traceroot's wheel installed with its dependencies when the venv is made (so a
    fresh venv has everything the package declares); the working tree's wheel is then
    reinstalled at every run, its dependencies checked again first (a no-op when none
    changed), and the package itself replaced.
    """
    path = VENVS / spec.name
    marker = path / ".bench-ready"
    python = path / "bin" / "python"
    log = VENVS / f"{spec.name}.pip.log"
    fingerprint = spec.fingerprint()
    fresh = not (marker.exists() and marker.read_text() == fingerprint and python.exists())
    if fresh:
        print(f"[setup] building venv {spec.name!r} in {path} (once) ...", flush=True)
        shutil.rmtree(path, ignore_errors=True)
        VENVS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
        log.write_text("")
        _pip(python, ["-q", "--upgrade", "pip"], log)
    if spec.ours and (fresh or spec.ours == "tree"):
        what = "the working tree" if spec.ours == "tree" else f"revision {spec.ours[:7]}"
        print(f"[setup] installing traceroot from {what} into {spec.name!r}", flush=True)
        with tempfile.TemporaryDirectory(prefix="trbench-wheel-") as tmp:
            wheel = _build_wheel(python, spec.ours, Path(tmp), log)
            _pip(python, ["-q", str(wheel), *spec.requirements], log)  # with dependencies
            _pip(python, ["-q", "--no-deps", "--force-reinstall", str(wheel)], log)
    elif fresh:
        _pip(python, ["-q", *spec.requirements], log)
    if fresh:
        _pip(python, [], log, command="check")  # a venv missing a dependency fails here
        marker.write_text(fingerprint)
    probe = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [str(python), "-c", probe, *spec.versions_of],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path,  # not the repository, whose egg-info would answer for `traceroot`
    )
    return Venv(spec, path, json.loads(out.stdout))


# ------------------------------------------------------------------------------- receiver


class CountingReceiver(OTLPReceiver):
    """The test suite's loopback OTLP/HTTP receiver, answering as usual but only counting.

    The test receiver turns every span into a Python record; on a 2-core machine that work
    would compete with the programs measured. This one gunzips and parses each request
    (upb, in C) and counts the spans, nothing more.
    """

    def __init__(self) -> None:
        super().__init__()
        self._count_lock = threading.Lock()
        self.span_count = 0
        self.request_count = 0
        self.statuses: Counter[int] = Counter()
        self.paths: Counter[str] = Counter()

    def reset(self) -> None:
        with self._count_lock:
            self.span_count = self.request_count = 0
            self.statuses.clear()
            self.paths.clear()

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:  # type: ignore[override]
        status, spans = 200, 0
        if handler.command != "POST":
            status = 405
        else:
            try:
                if handler.headers.get("Content-Encoding", "").strip().lower() == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            except Exception:
                status = 400
        with self._count_lock:
            self.request_count += 1
            self.statuses[status] += 1
            self.paths[handler.path] += 1
            if status == 200:
                self.span_count += spans
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/x-protobuf")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            handler.wfile.flush()
        except OSError:
            pass


# ---------------------------------------------------------------------------- processes


@dataclass
class Run:
    wall_s: float
    maxrss_mb: float
    returncode: int
    stdout: str
    stderr: str


def clean_env(venv: Venv, extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without tracing or Python settings, `venv` first on PATH."""
    # PYTHON* goes too: PYTHONDONTWRITEBYTECODE would make every run recompile what
    # imports had not cached yet.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACEROOT_", "OTEL_", "LANGFUSE_", "BENCH_", "PYTHON"))
        and k != "VIRTUAL_ENV"
    }
    env["PATH"] = f"{venv.bin}{os.pathsep}{os.environ.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv.path)
    env.update(extra)
    return env


def run_process(argv: Sequence[str], env: dict[str, str], cwd: Path) -> Run:
    """Run to completion (killed after CHILD_TIMEOUT); its wall time and peak RSS.

    `argv[0]` must be an absolute path. The command is forked by measure.py, a small process,
    so that the peak RSS is the command's own (see there).
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".measure") as result,
    ):
        helper = [sys.executable, "-S", "-I", str(HERE / "measure.py"), result.name]
        proc = subprocess.Popen(
            [*helper, *argv],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, to kill it whole on a timeout
        )
        try:
            proc.wait(timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
        fields = result.read().split()
        if proc.returncode != 0 or len(fields) != 3:
            return Run(float("nan"), float("nan"), proc.returncode or -1, stdout, stderr)
        return Run(
            wall_s=float(fields[0]),
            maxrss_mb=int(fields[1]) / 1024,  # KiB on Linux
            returncode=int(fields[2]),
            stdout=stdout,
            stderr=stderr,
        )


# --------------------------------------------------------------------------------- burst


@dataclass
class Contender:
    key: str
    label: str
    venv: str
    program: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class BurstResult:
    contender: Contender
    walls: list[float] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)
    calls_cpu: list[float] = field(default_factory=list)
    startups: list[float] = field(default_factory=list)
    made: list[int] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def traceroot_env(url: str) -> dict[str, str]:
    return {
        "TRACEROOT_API_KEY": "tr-bench-key",
        "TRACEROOT_HOST_URL": url,
        # Fixed git context for both TraceRoot SDKs: the benchmark measures tracing, not
        # the discovery of a repository (the programs run in an empty temporary directory).
        "TRACEROOT_GIT_REPO": "bench/bench",
        "TRACEROOT_GIT_REF": "0" * 40,
    }


def contenders(url: str, baseline: str | None) -> list[Contender]:
    tr_env = traceroot_env(url)
    otel_env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/v1/traces"}
    langfuse_env = {
        "LANGFUSE_PUBLIC_KEY": "pk-lf-bench",
        "LANGFUSE_SECRET_KEY": "sk-lf-bench",
        "LANGFUSE_BASE_URL": url,
        "LANGFUSE_HOST": url,  # the older name, for older releases
    }
    before = []
    if baseline:
        before = [
            Contender(
                BASELINE,
                f"traceroot at {baseline} (before), defaults",
                BASELINE,
                "burst_traceroot.py",
                tr_env,
            )
        ]
    return [
        Contender("traceroot", "traceroot (this repo), defaults", "traceroot",
                  "burst_traceroot.py", tr_env),
        *before,
        Contender("otel-sized", f"plain OTel, BSP queue {SIZED_QUEUE} (baseline)", "otel",
                  "burst_otel.py", {**otel_env, "OTEL_BSP_MAX_QUEUE_SIZE": str(SIZED_QUEUE)}),
        Contender("otel-default", "plain OTel, BSP defaults (queue 2048)", "otel",
                  "burst_otel.py", otel_env),
        Contender("ref", "reference traceroot 0.5.0, defaults", "ref",
                  "burst_traceroot.py", tr_env),
        Contender("langfuse", "langfuse @observe, defaults", "langfuse",
                  "burst_langfuse.py", langfuse_env),
    ]  # fmt: skip


def run_burst(
    venvs: dict[str, Venv],
    rx: CountingReceiver,
    runs: int,
    roots: int,
    children: int,
    cwd: Path,
    baseline: str | None,
) -> list[BurstResult]:
    results = [BurstResult(c) for c in contenders(rx.url, baseline)]
    warm = {"BENCH_ROOTS": "2", "BENCH_CHILDREN": "5"}
    sizes = {"BENCH_ROOTS": str(roots), "BENCH_CHILDREN": str(children)}
    for result in results:  # compile bytecode, warm the page cache
        c = result.contender
        venv = venvs[c.venv]
        run_process(
            [venv.python, str(PROGRAMS / c.program)], clean_env(venv, {**c.env, **warm}), cwd
        )
    for i in range(runs):
        order = results[i % len(results) :] + results[: i % len(results)]  # rotate the order
        for result in order:
            c = result.contender
            venv = venvs[c.venv]
            rx.reset()
            run = run_process(
                [venv.python, str(PROGRAMS / c.program)], clean_env(venv, {**c.env, **sizes}), cwd
            )
            time.sleep(0.2)  # let the receiver finish a request the child did not wait for
            if run.returncode != 0 or not run.stdout.strip():
                result.failures.append(f"exit {run.returncode}: {run.stderr.strip()[-300:]}")
                continue
            report = json.loads(run.stdout.strip().splitlines()[-1])
            result.walls.append(run.wall_s)
            result.calls.append(report["calls_s"])
            result.calls_cpu.append(report["calls_cpu_s"])
            result.startups.append(report["startup_s"])
            result.made.append(report["spans"])
            result.delivered.append(rx.span_count)
            result.requests.append(rx.request_count)
            result.rss.append(run.maxrss_mb)
            print(
                f"  burst run {i + 1}/{runs} {c.key:<13} wall {run.wall_s:6.2f}s  "
                f"delivered {rx.span_count}/{report['spans']} in {rx.request_count} requests  "
                f"calling thread {report['calls_cpu_s'] / report['spans'] * 1e6:.1f} µs/call  "
                f"peak RSS {run.maxrss_mb:.0f} MB",
                flush=True,
            )
    return results


# ------------------------------------------------------------------------------ start-up


@dataclass
class StartupCase:
    key: str
    label: str
    venv: str
    argv: list[str]
    env: dict[str, str]
    bare: str  # key of the bare run of the same program
    versus: tuple[str, str] | None = None  # opentelemetry-instrument runs of the same program
    before: str | None = None  # key of the same command under the baseline revision
    walls: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def hook_env(venv: Venv, url: str, cwd: Path) -> dict[str, str]:
    """The environment a Python process started by a program under traceroot-run inherits.

    Asked of traceroot-run itself (a program under it prints its environment), so it holds
    whatever the launcher of that revision sets: the hook on PYTHONPATH and the rest.
    """
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    env = clean_env(venv, traceroot_env(url))
    out = subprocess.run(
        [str(venv.bin / "traceroot-run"), "python", "-c", dump],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    seen: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return {k: v for k, v in seen.items() if not k.startswith("BENCH_")}


def startup_cases(
    venvs: dict[str, Venv], url: str, cwd: Path, baseline: str | None
) -> list[StartupCase]:
    app = str(PROGRAMS / "app_openai.py")
    tr_env = traceroot_env(url)
    otel_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",  # the distro's default is gRPC
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    oi = " (+ OpenAI instrumentor)"
    hook = " (hook on its path, no span)"

    def ours(
        key: str,
        label: str,
        argv: list[str],
        env: dict[str, str],
        bare: str,
        versus: tuple[str, str] | None = None,
    ) -> list[StartupCase]:
        now = StartupCase(key, label, "traceroot", argv, env, bare, versus)
        if not baseline:
            return [now]
        now.before = f"{key}-{BASELINE}"
        env_before = hook_env(venvs[BASELINE], url, cwd) if env is hook_now else env
        return [
            now,
            StartupCase(
                now.before, f"{label}, at {baseline} (before)", BASELINE, argv, env_before, bare
            ),
        ]

    hook_now = hook_env(venvs["traceroot"], url, cwd)
    return [
        StartupCase("bare-pass", "python -c pass", "traceroot", ["python", "-c", "pass"], {},
                    "bare-pass"),
        *ours("tr-pass", "traceroot-run python -c pass",
              ["traceroot-run", "python", "-c", "pass"], tr_env, "bare-pass",
              ("otel-pass", "otel-oi-pass")),
        *ours("hook-pass", "python -c pass" + hook, ["python", "-c", "pass"], hook_now,
              "bare-pass"),
        StartupCase("otel-pass", "opentelemetry-instrument python -c pass", "otel",
                    ["opentelemetry-instrument", "python", "-c", "pass"], otel_env, "bare-pass"),
        StartupCase("otel-oi-pass", "opentelemetry-instrument python -c pass" + oi, "otel-openai",
                    ["opentelemetry-instrument", "python", "-c", "pass"], otel_env, "bare-pass"),
        StartupCase("bare-openai", "python app_openai.py", "traceroot", ["python", app], {},
                    "bare-openai"),
        *ours("tr-openai", "traceroot-run python app_openai.py",
              ["traceroot-run", "python", app], tr_env, "bare-openai",
              ("otel-openai", "otel-oi-openai")),
        StartupCase("otel-openai", "opentelemetry-instrument python app_openai.py", "otel",
                    ["opentelemetry-instrument", "python", app], otel_env, "bare-openai"),
        StartupCase("otel-oi-openai", "opentelemetry-instrument python app_openai.py" + oi,
                    "otel-openai", ["opentelemetry-instrument", "python", app], otel_env,
                    "bare-openai"),
    ]  # fmt: skip


def run_startup(
    venvs: dict[str, Venv], url: str, runs: int, cwd: Path, baseline: str | None
) -> list[StartupCase]:
    cases = startup_cases(venvs, url, cwd, baseline)
    for case in cases:  # warm-up, not counted
        venv = venvs[case.venv]
        run_process(_resolve(case.argv, venv), clean_env(venv, case.env), cwd)
    for i in range(runs):
        order = cases[i % len(cases) :] + cases[: i % len(cases)]
        for case in order:
            venv = venvs[case.venv]
            run = run_process(_resolve(case.argv, venv), clean_env(venv, case.env), cwd)
            if run.returncode != 0:
                case.failures.append(f"exit {run.returncode}: {run.stderr.strip()[-300:]}")
                continue
            case.walls.append(run.wall_s)
            case.rss.append(run.maxrss_mb)
    for case in cases:
        print(
            f"  start-up {case.key:<12} median {_median(case.walls) * 1000:7.1f} ms  "
            f"peak RSS {_median(case.rss):5.1f} MB  ({len(case.walls)} runs)",
            flush=True,
        )
    return cases


def _resolve(argv: list[str], venv: Venv) -> list[str]:
    """The venv's own executable for the first word (PATH inside the child picks the rest)."""
    return [str(venv.bin / argv[0]), *argv[1:]]


# -------------------------------------------------------------------------------- server


SERVER_CONCURRENCY = 16


@dataclass
class ServerCase:
    key: str
    label: str
    venv: str
    traced: bool
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    rss_start: list[float] = field(default_factory=list)  # MB, right after the warm-up
    rss_end: list[float] = field(default_factory=list)  # MB, as the load ends
    cpu_ms: list[float] = field(default_factory=list)  # the server's CPU per measured request
    spans_per_request: list[float] = field(default_factory=list)
    exit_s: list[float] = field(default_factory=list)  # SIGTERM to exit
    failures: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return float("nan")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) process `pid` has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ask", timeout=5) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def server_cases(baseline: str | None) -> list[ServerCase]:
    cases = [
        ServerCase("untraced", "uvicorn (untraced)", "traceroot", traced=False),
        ServerCase("traceroot", "traceroot-run uvicorn (this repo)", "traceroot", traced=True),
    ]
    if baseline:
        cases.append(
            ServerCase(BASELINE, f"traceroot-run uvicorn at {baseline} (before)", BASELINE, True)
        )
    return cases


def server_command(
    case: ServerCase, venv: Venv, rx: CountingReceiver, openai_url: str
) -> tuple[list[str], dict[str, str], int]:
    """The command line, environment and port of `case`'s server."""
    port = _free_port()
    uvicorn = [str(venv.bin / "uvicorn"), "server_app:app", "--app-dir", str(PROGRAMS),
               "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    extra = {"BENCH_OPENAI_URL": openai_url}
    if case.traced:
        argv = [str(venv.bin / "traceroot-run"), *uvicorn]
        extra = {**extra, **traceroot_env(rx.url)}
    else:
        argv, extra = uvicorn, {**extra, "BENCH_UNTRACED": "1"}
    return argv, clean_env(venv, extra), port


def run_server_once(
    case: ServerCase,
    venv: Venv,
    rx: CountingReceiver,
    openai_url: str,
    warmup: float,
    duration: float,
    cwd: Path,
) -> None:
    argv, env, port = server_command(case, venv, rx, openai_url)
    rx.reset()
    with tempfile.TemporaryFile() as err:
        # Both launchers exec the program: this pid is uvicorn's own.
        server = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )  # fmt: skip
        try:
            if not _wait_ready(port, server):
                err.seek(0)
                tail = err.read().decode(errors="replace").strip()[-300:]
                case.failures.append(f"server not ready (exit {server.poll()}): {tail}")
                return
            load = subprocess.Popen(
                [sys.executable, str(PROGRAMS / "loadgen.py"), str(port), "/ask",
                 str(SERVER_CONCURRENCY), str(warmup), str(duration)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            time.sleep(warmup)
            rss_start, cpu_start = _rss_mb(server.pid), _cpu_s(server.pid)
            out, load_err = load.communicate(timeout=duration + 120)
            rss_end, cpu_end = _rss_mb(server.pid), _cpu_s(server.pid)
            if load.returncode != 0:
                case.failures.append(f"load generator exit {load.returncode}: {load_err[-300:]}")
                return
            result = json.loads(out.strip().splitlines()[-1])
            time.sleep(0.5)  # the last exports on their way
            spans = rx.span_count
            stopped = time.perf_counter()
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                case.failures.append("server still running 60 s after SIGTERM: killed")
            exit_s = time.perf_counter() - stopped
            time.sleep(0.2)
            spans = max(spans, rx.span_count)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    case.rps.append(result["rps"])
    case.p50.append(result["p50_ms"])
    case.p99.append(result["p99_ms"])
    case.errors.append(result["errors"])
    case.rss_start.append(rss_start)
    case.rss_end.append(rss_end)
    case.exit_s.append(exit_s)
    # CPU time is far less moved by other load on the machine than throughput is.
    case.cpu_ms.append((cpu_end - cpu_start) / max(1, result["requests"]) * 1000)
    # Every request answered (warm-up and the readiness probe included) made spans.
    case.spans_per_request.append(spans / max(1, result["answered"] + 1))
    print(
        f"  server {case.key:<10} {result['rps']:7.1f} req/s  p50 {result['p50_ms']:6.1f} ms  "
        f"p99 {result['p99_ms']:6.1f} ms  errors {result['errors']}  "
        f"CPU {case.cpu_ms[-1]:.2f} ms/request  RSS {rss_start:.0f} -> {rss_end:.0f} MB  "
        f"spans/request "
        f"{case.spans_per_request[-1]:.2f}  exit {exit_s:.2f} s",
        flush=True,
    )


def run_server(
    venvs: dict[str, Venv],
    rx: CountingReceiver,
    rounds: int,
    warmup: float,
    duration: float,
    cwd: Path,
    baseline: str | None,
) -> list[ServerCase]:
    cases = server_cases(baseline)
    with fake_openai() as openai_url:
        for i in range(rounds):
            order = cases[i % len(cases) :] + cases[: i % len(cases)]
            for case in order:
                run_server_once(case, venvs[case.venv], rx, openai_url, warmup, duration, cwd)
    return cases


@contextlib.contextmanager
def fake_openai() -> Iterator[str]:
    """The loopback OpenAI fake, running while in the block: its base URL."""
    fake = subprocess.Popen(
        [sys.executable, str(PROGRAMS / "fake_openai.py")],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert fake.stdout is not None
        yield f"http://127.0.0.1:{int(fake.stdout.readline())}/v1"
    finally:
        fake.terminate()
        fake.wait(timeout=30)


# --------------------------------------------------------------------------- instructions

INSTRUCTION_BURSTS = ("traceroot", BASELINE, "otel-sized")
SERVER_WARMUP_REQUESTS, SERVER_COUNTED_REQUESTS = 10, 100


@dataclass
class Instructions:
    burst: dict[str, float] = field(default_factory=dict)  # contender key: per span
    server: dict[str, float] = field(default_factory=dict)  # server case key: per request
    requests: int = SERVER_COUNTED_REQUESTS  # the server's, counted


def run_instructions(
    venvs: dict[str, Venv],
    rx: CountingReceiver,
    cwd: Path,
    baseline: str | None,
    roots: int,
    children: int,
    requests: int,
) -> Instructions:
    found = Instructions(requests=requests)
    sizes = {"BENCH_ROOTS": str(roots), "BENCH_CHILDREN": str(children)}
    for c in contenders(rx.url, baseline):
        if c.key not in INSTRUCTION_BURSTS:
            continue
        venv = venvs[c.venv]
        rx.reset()
        total = instructions.count(
            [venv.python, str(PROGRAMS / c.program)], clean_env(venv, {**c.env, **sizes}), cwd
        )
        spans = roots * (1 + children)
        if total is not None:
            found.burst[c.key] = total / spans
        print(f"  instructions: burst {c.key:<13} {_count(total, spans)}/span", flush=True)
    with fake_openai() as openai_url:
        for case in server_cases(baseline):
            venv = venvs[case.venv]
            argv, env, port = server_command(case, venv, rx, openai_url)
            per = instructions.per_request(
                argv, env, cwd, f"http://127.0.0.1:{port}/ask",
                functools.partial(_ready_at, port),
                SERVER_WARMUP_REQUESTS, requests,
            )  # fmt: skip
            if per is not None:
                found.server[case.key] = per
            print(f"  instructions: server {case.key:<10} {_count(per, 1)}/request", flush=True)
    return found


def _ready_at(port: int, proc: subprocess.Popen[bytes]) -> bool:
    return _wait_ready(port, proc, timeout=600)  # start-up under callgrind takes a while


def _count(total: float | None, per: int) -> str:
    return "failed" if total is None else f"{total / per / 1e6:.3f}M"


# ------------------------------------------------------------------------------- report


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and a == a and b == b else "n/a"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()} ({platform.python_implementation()}); "
        f"1-min load average {load:.2f} at start"
    )


def repo_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "traceroot", "pyproject.toml"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        return rev + (" + uncommitted changes in traceroot/" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _spread(values: Sequence[float], scale: float = 1.0, fmt: str = ".0f") -> str:
    if not values:
        return "n/a"
    return f"{min(values) * scale:{fmt}}-{max(values) * scale:{fmt}}"


def _paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Ratios round by round (a[i] / b[i]): both measured minutes apart, not hours."""
    if len(a) != len(b):  # a failed round: pair nothing rather than mispair
        return []
    return [x / y for x, y in zip(a, b, strict=True) if y]


def _ratio_cell(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}x"
    return f"{_median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


@dataclass
class Report:
    machine_text: str
    command: str
    burst: list[BurstResult]
    startup: list[StartupCase]
    server: list[ServerCase]
    venvs: dict[str, Venv]
    runs: int
    startup_runs: int
    server_rounds: int
    server_duration: float
    roots: int
    children: int
    elapsed_s: float
    baseline: str | None
    instructions: Instructions | None = None


def _burst_numbers(r: BurstResult) -> dict[str, float]:
    if not r.walls:
        return {}
    made = _median(r.made)
    return {
        "made": made,
        "cost": _median(r.walls) / made,
        "delivered": _median([d / m for d, m in zip(r.delivered, r.made, strict=True)]),
        "calls": _median(r.calls) / made,
        "cpu": _median(r.calls_cpu) / made,
    }


def summary(rep: Report) -> list[str]:
    """The issues' targets, each with the number this run measured.

    A ratio is of the two medians; in brackets, the range of the ratios taken run by run (or
    round by round), each pair measured back to back.
    """
    lines: list[str] = []
    add = lines.append
    burst = {r.contender.key: r for r in rep.burst}
    startup = {c.key: c for c in rep.startup}
    server = {c.key: c for c in rep.server}
    keys = ["traceroot"] + ([BASELINE] if rep.baseline else [])
    nan = float("nan")
    Cell = tuple[float, list[float]]  # the value, and what it ranges over

    head = "| measure | target | this repo |" + (
        f" at {rep.baseline} (before) | now / before |" if rep.baseline else ""
    )
    add(head)
    add("|---|---:|---:|" + ("---:|---:|" if rep.baseline else ""))

    def row(name: str, target: str, cells: list[Cell], fmt: str, ratio: bool = True) -> None:
        text = []
        for value, spread in cells:
            cell = fmt.format(value) if value == value else "n/a"
            if len(spread) > 1:
                cell += f" ({fmt.format(min(spread))}-{fmt.format(max(spread))})"
            text.append(cell)
        if rep.baseline:
            text.append(_ratio(cells[0][0], cells[1][0]) if ratio else "")
        add(f"| {name} | {target} | " + " | ".join(text) + " |")

    def ratio_of(a: Sequence[float], b: Sequence[float]) -> Cell:
        return _median(a) / _median(b) if a and b else nan, _paired_ratios(a, b)

    def per_span(key: str, attr: str, scale: float) -> Cell:
        r = burst.get(key)
        if r is None or not r.walls:
            return nan, []
        values = [v / m * scale for v, m in zip(getattr(r, attr), r.made, strict=True)]
        return _median(values), values

    base = burst.get("otel-sized")
    row(
        "burst cost/span vs sized plain OTel",
        "≤ 0.5x",
        [ratio_of(burst[k].walls, base.walls) if k in burst and base else (nan, []) for k in keys],
        "{:.2f}x",
    )
    delivered = []
    for k in keys:
        r = burst.get(k)
        fractions = [d / m for d, m in zip(r.delivered, r.made, strict=True)] if r else []
        delivered.append((_median(fractions), fractions))
    row("burst delivered", "100%", delivered, "{:.1%}", ratio=False)
    row(
        "calling thread's CPU per decorated call (burst)",
        "≤ 20 µs",
        [per_span(k, "calls_cpu", 1e6) for k in keys],
        "{:.1f} µs",
    )
    row(
        "calling thread's wall time per decorated call (burst)",
        "",
        [per_span(k, "calls", 1e6) for k in keys],
        "{:.1f} µs",
    )

    def wall_ratio(case: str, versus: str, key: str) -> Cell:
        mine = startup.get(case if key == "traceroot" else f"{case}-{BASELINE}")
        other = startup.get(versus)
        return ratio_of(mine.walls, other.walls) if mine and other else (nan, [])

    row(
        "`traceroot-run python -c pass` / `opentelemetry-instrument python -c pass`",
        "≤ 0.25x",
        [wall_ratio("tr-pass", "otel-pass", k) for k in keys],
        "{:.2f}x",
    )
    row(
        "`python -c pass` with the hook on its path, no span / bare `python -c pass`",
        "≤ 1.5x",
        [wall_ratio("hook-pass", "bare-pass", k) for k in keys],
        "{:.2f}x",
    )
    row(
        "`traceroot-run python app_openai.py` / bare (imports openai)",
        "≤ 1.15x",
        [wall_ratio("tr-openai", "bare-openai", k) for k in keys],
        "{:.2f}x",
    )
    untraced = server.get("untraced")
    if untraced is not None:

        def server_ratio(key: str, attr: str) -> Cell:
            case = server.get(key)
            if case is None:
                return nan, []
            ratios = _paired_ratios(getattr(case, attr), getattr(untraced, attr))
            return _median(ratios), ratios

        row(
            f"server throughput vs untraced (concurrency {SERVER_CONCURRENCY})",
            "≥ 0.95x",
            [server_ratio(k, "rps") for k in keys],
            "{:.2f}x",
        )
        row(
            "server p99 latency vs untraced",
            "≤ 1.15x",
            [server_ratio(k, "p99") for k in keys],
            "{:.2f}x",
        )
        row(
            "server CPU time per request vs untraced",
            "",
            [server_ratio(k, "cpu_ms") for k in keys],
            "{:.2f}x",
        )
        growth = []
        for k in keys:
            case = server.get(k)
            ratios = _paired_ratios(case.rss_end, case.rss_start) if case else []
            growth.append((_median(ratios), ratios))
        row("server RSS, end of load / after warm-up", "levels off", growth, "{:.2f}x", False)
    counted = rep.instructions
    if counted is not None:

        def counted_ratio(found: dict[str, float], key: str, versus: str) -> Cell:
            if key not in found or versus not in found:
                return nan, []
            return found[key] / found[versus], []

        row(
            "burst instructions/span vs sized plain OTel (callgrind)",
            "",
            [counted_ratio(counted.burst, k, "otel-sized") for k in keys],
            "{:.3f}x",
        )
        row(
            "server instructions/request vs untraced (callgrind)",
            "",
            [counted_ratio(counted.server, k, "untraced") for k in keys],
            "{:.3f}x",
        )
    return lines


def report(rep: Report) -> str:
    lines: list[str] = []
    add = lines.append
    versions = "; ".join(
        f"{name}: " + ", ".join(f"{k} {v}" for k, v in venv.versions.items())
        for name, venv in rep.venvs.items()
    )
    add("# traceroot benchmarks")
    add("")
    add(f"- Date: {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")
    add(f"- Machine: {rep.machine_text}")
    add(f"- traceroot revision: {repo_revision()}")
    if rep.baseline:
        add(f"- Baseline (*before*): traceroot at {rep.baseline}, a wheel built from `git archive`")
    add(f"- Versions (per venv): {versions}")
    add(f"- Command: `{rep.command}` ({rep.elapsed_s / 60:.1f} min)")
    add("")
    add("## Targets")
    add("")
    add(
        "The open issues' targets, each measured in this run (medians; ratios are between "
        "numbers of this run only). Details and spreads below."
    )
    add("")
    lines.extend(summary(rep))
    add("")

    roots, children = rep.roots, rep.children
    spans = roots * (1 + children)
    add(f"## 1. Burst: {roots} x (1 + {children}) = {spans:,} decorated calls, one thread")
    add("")
    add(
        f"Median of {rep.runs} runs each; all contenders send OTLP/HTTP to the same loopback "
        "receiver. *Cost/span* = wall time of the whole program (interpreter start-up, imports, "
        "calls, export, flush at exit) / spans made. *vs baseline*: ratios to the plain "
        "OpenTelemetry pipeline whose queue is sized to deliver the burst. The wall time split: "
        "*start-up* (process start to the first call), *calls/span* (wall time of the calls on "
        "the calling thread, per span; the export thread competes with it for the GIL), "
        "*calling thread/call* (the CPU time the calling thread itself spent in the decorated "
        "calls, `time.thread_time()` inside the program, per span: the share the program's "
        "own thread pays), *exit* (after the last call: the flush of what is still queued)."
    )
    add("")
    add(
        "| contender | delivered | cost/span | vs baseline | wall (min-max) | start-up | "
        "calls/span | calling thread/call (min-max) | exit | peak RSS | RSS vs baseline |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = next(r for r in rep.burst if r.contender.key == "otel-sized")
    base_cost = _median(base.walls) / spans if base.walls else float("nan")
    base_rss = _median(base.rss)
    failures: list[str] = []
    for r in rep.burst:
        failures += [f"burst {r.contender.key}: {f}" for f in r.failures]
        n = _burst_numbers(r)
        if not n:
            add(f"| {r.contender.label} | failed: {r.failures[:1]} | | | | | | | | | |")
            continue
        cpu_per_call = [c / m for c, m in zip(r.calls_cpu, r.made, strict=True)]
        exits = [w - s - c for w, s, c in zip(r.walls, r.startups, r.calls, strict=True)]
        add(
            f"| {r.contender.label} | {n['delivered']:.1%} ({int(_median(r.delivered)):,}) | "
            f"{n['cost'] * 1e6:.0f} µs | {_ratio(n['cost'], base_cost)} | "
            f"{min(r.walls):.2f}-{max(r.walls):.2f} s | {_median(r.startups):.2f} s | "
            f"{n['calls'] * 1e6:.0f} µs | {n['cpu'] * 1e6:.1f} µs "
            f"({_spread(cpu_per_call, 1e6, '.1f')}) | {_median(exits):.2f} s | "
            f"{_median(r.rss):.0f} MB | {_ratio(_median(r.rss), base_rss)} |"
        )
    add("")

    add("## 2. Start-up and 3. peak memory")
    add("")
    add(
        f"Median wall time of {rep.startup_runs} runs each (after one warm-up run); peak RSS of "
        "the process (both launchers exec the program in the same process). traceroot-run and "
        "opentelemetry-instrument both export to the loopback receiver. *(hook on its path, no "
        "span)*: `python -c pass` in the environment a program under traceroot-run gives the "
        "processes it starts (asked of traceroot-run itself), as a shell script's or a "
        "build's Python subprocesses get it. traceroot-run instruments OpenAI with the "
        "OpenInference instrumentor; *(+ OpenAI instrumentor)* rows run "
        "opentelemetry-instrument in a venv where that same instrumentor is installed, so it "
        "does the same work. */ otel-instrument*: traceroot-run's wall time over "
        "opentelemetry-instrument's on the same program, without / with that instrumentor."
        + (" */ before*: over the same command at the baseline revision." if rep.baseline else "")
    )
    add("")
    add(
        "| command | wall | wall (min-max) | vs bare python | peak RSS | RSS vs bare "
        "| / otel-instrument | / otel-instrument (+ OpenAI instr.) | / before |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    by_key = {c.key: c for c in rep.startup}
    for c in rep.startup:
        wall = _median(c.walls)
        bare = by_key[c.bare]
        versus = ["", ""]
        if c.versus:
            versus = [_ratio(wall, _median(by_key[k].walls)) for k in c.versus]
        before = _ratio(wall, _median(by_key[c.before].walls)) if c.before else ""
        add(
            f"| `{c.label}` | {wall * 1000:.0f} ms | {_spread(c.walls, 1000)} ms | "
            f"{_ratio(wall, _median(bare.walls))} | {_median(c.rss):.0f} MB | "
            f"{_ratio(_median(c.rss), _median(bare.rss))} | {versus[0]} | {versus[1]} | "
            f"{before} |"
        )
        failures += [f"start-up {c.key}: {f}" for f in c.failures]
    add("")

    if rep.server:
        add(f"## 4. Server: FastAPI under uvicorn, concurrency {SERVER_CONCURRENCY}")
        add("")
        add(
            "`programs/server_app.py`: each `GET /ask` runs an `@observe` agent that calls an "
            "`@observe` tool, then OpenAI (`AsyncOpenAI`, chat completion) on a fast loopback "
            "fake (`programs/fake_openai.py`). Traced: `traceroot-run uvicorn server_app:app` "
            "exporting to the loopback receiver; untraced: plain `uvicorn`, the same app with "
            "an identity decorator and no traceroot import. One uvicorn worker; the load "
            f"(`programs/loadgen.py`: {SERVER_CONCURRENCY} keep-alive connections, each sending "
            f"its next request when the last is answered) runs {rep.server_duration:.0f} s "
            "after a warm-up; the contenders take turns, "
            f"{rep.server_rounds} rounds. Ratios are taken round by round against the untraced "
            "server of the same round: median (min-max). RSS is the server's, right after the "
            "warm-up and as the load ends. *CPU/request*: the server process's CPU time (all its "
            "threads, the export thread included) over the measured window / requests measured, "
            "much less moved by other load on a shared machine than throughput and latency are. "
            "*exit*: SIGTERM to exit (traced: the final flush)."
        )
        add("")
        add(
            "| server | req/s (min-max) | vs untraced | p50 | p99 (min-max) | p99 vs untraced "
            "| CPU/request | CPU vs untraced | errors | RSS start → end | spans/request | exit |"
        )
        add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        untraced = next(x for x in rep.server if x.key == "untraced")
        for sc in rep.server:
            failures += [f"server {sc.key}: {f}" for f in sc.failures]
            if not sc.rps:
                add(f"| {sc.label} | failed: {sc.failures[:1]} | | | | | | | | | | |")
                continue
            traced = sc is not untraced
            add(
                f"| {sc.label} | {_median(sc.rps):.0f} ({_spread(sc.rps)}) | "
                f"{_ratio_cell(_paired_ratios(sc.rps, untraced.rps)) if traced else ''} | "
                f"{_median(sc.p50):.1f} ms | {_median(sc.p99):.1f} ms "
                f"({_spread(sc.p99, fmt='.1f')}) | "
                f"{_ratio_cell(_paired_ratios(sc.p99, untraced.p99)) if traced else ''} | "
                f"{_median(sc.cpu_ms):.2f} ms | "
                f"{_ratio_cell(_paired_ratios(sc.cpu_ms, untraced.cpu_ms)) if traced else ''} | "
                f"{sum(sc.errors)} | {_median(sc.rss_start):.0f} → {_median(sc.rss_end):.0f} MB | "
                f"{_median(sc.spans_per_request):.2f} | {_median(sc.exit_s):.2f} s |"
            )
        add("")

    counted = rep.instructions
    if counted is not None:
        add("## 5. Instructions (valgrind's callgrind)")
        add("")
        add(
            "Each program run once under callgrind (`PYTHONHASHSEED=0`), counting the "
            "instructions of every thread of the process (the export thread's included; not "
            "the kernel's work, nor time spent waiting). The same work gives the same count "
            "within a fraction of a percent, where wall time on this shared machine moves by "
            "tens of percent; but the work itself follows timing (how many spans the export "
            "thread finds at each wake-up, how often it wakes, how long a full queue waits), "
            "so one program's count can move by several percent, and more, between runs. "
            "Burst: the whole program (start-up, calls, export, exit) per "
            f"span. Server: from after {SERVER_WARMUP_REQUESTS} warm-up requests to exit on "
            f"SIGTERM (the final flush included), over {counted.requests} requests sent "
            "one after another, per request."
        )
        add("")
        add("| program | instructions | vs |")
        add("|---|---:|---:|")
        labels = {c.key: c.label for c in contenders("", rep.baseline)}
        for key, value in counted.burst.items():
            base_value = counted.burst.get("otel-sized")
            compared = f"{_ratio(value, base_value)} of plain OTel (sized)" if base_value else ""
            if key == BASELINE and "traceroot" in counted.burst:
                compared += f"; this repo is {_ratio(counted.burst['traceroot'], value)} of it"
            add(f"| burst: {labels.get(key, key)} | {value / 1e3:.1f} k/span | {compared} |")
        server_labels = {c.key: c.label for c in server_cases(rep.baseline)}
        for key, value in counted.server.items():
            base_value = counted.server.get("untraced")
            compared = "" if key == "untraced" or not base_value else _ratio(value, base_value)
            if compared:
                compared += " of untraced"
            if key == BASELINE and "traceroot" in counted.server:
                compared += f"; this repo is {_ratio(counted.server['traceroot'], value)} of it"
            label = server_labels.get(key, key)
            add(f"| server: {label} | {value / 1e6:.2f} M/request | {compared} |")
        add("")

    if failures:
        add("Failed runs (not in the medians):")
        add("")
        lines.extend(f"- {f}" for f in failures)
        add("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="burst runs per contender (5)")
    parser.add_argument("--startup-runs", type=int, default=9, help="start-up runs per command (9)")
    parser.add_argument("--server-rounds", type=int, default=5, help="server rounds (5)")
    parser.add_argument(
        "--server-seconds", type=float, default=10.0, help="server load per round, s (10)"
    )
    parser.add_argument(
        "--baseline-rev",
        metavar="REV",
        help="also benchmark traceroot at git revision REV (a wheel of that commit, in its "
        "own venv), side by side with the working tree",
    )
    parser.add_argument("--no-server", action="store_true", help="skip the server benchmark")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions under valgrind's callgrind (burst and server; about "
        "12 minutes more)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: small and short")
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    parser.add_argument("--setup-only", action="store_true", help="build the venvs and stop")
    args = parser.parse_args(argv)
    roots, children, runs, startup_runs = ROOTS, CHILDREN, args.runs, args.startup_runs
    rounds, warmup, duration = args.server_rounds, 3.0, args.server_seconds
    if args.quick:
        roots, children, runs, startup_runs = 20, 10, 1, 2
        rounds, warmup, duration = 1, 1.0, 3.0

    specs = list(VENV_SPECS)
    baseline = None
    if args.baseline_rev:
        full, baseline = resolve_revision(args.baseline_rev)
        specs.append(baseline_spec(full))
    venvs = {spec.name: ensure_venv(spec) for spec in specs}
    if args.setup_only:
        return 0
    started = time.perf_counter()
    machine_text = machine()
    print(f"machine: {machine_text}", flush=True)
    with CountingReceiver() as rx, tempfile.TemporaryDirectory(prefix="trbench-") as tmp:
        cwd = Path(tmp)
        print(f"burst: {roots} x (1 + {children}) spans, {runs} run(s) each", flush=True)
        burst = run_burst(venvs, rx, runs, roots, children, cwd, baseline)
        print(f"start-up: {startup_runs} run(s) each", flush=True)
        startup = run_startup(venvs, rx.url, startup_runs, cwd, baseline)
        server: list[ServerCase] = []
        if not args.no_server:
            print(f"server: {rounds} round(s) of {duration:.0f} s each", flush=True)
            server = run_server(venvs, rx, rounds, warmup, duration, cwd, baseline)
        counted = None
        if args.instructions:
            if instructions.available():
                print("instructions: under callgrind, one run each", flush=True)
                requests = 10 if args.quick else SERVER_COUNTED_REQUESTS
                counted = run_instructions(venvs, rx, cwd, baseline, roots, children, requests)
            else:
                print("instructions: valgrind not found; skipped", flush=True)
    command = " ".join(["python benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])
    text = report(
        Report(
            machine_text=machine_text,
            command=command,
            burst=burst,
            startup=startup,
            server=server,
            venvs=venvs,
            runs=runs,
            startup_runs=startup_runs,
            server_rounds=rounds,
            server_duration=duration,
            roots=roots,
            children=children,
            elapsed_s=time.perf_counter() - started,
            baseline=baseline,
            instructions=counted,
        )
    )
    print()
    print(text)
    if not args.quick or args.output != HERE / "results.md":
        args.output.write_text(text)
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

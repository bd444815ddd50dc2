"""Side-by-side benchmark: traceroot against plain OpenTelemetry, the reference TraceRoot SDK
0.5.0 and Langfuse, on this machine, in one run, as ratios.

    python benchmarks/run.py            # about 4-6 minutes; the first run also builds the venvs
    python benchmarks/run.py --quick    # a smoke run: small burst, one repetition

1. Burst: 200 root calls x 100 child calls (20,200 spans), one thread, as fast as it can,
   each contender in its own process, all sending OTLP/HTTP to the same loopback receiver
   (in this process; it only counts spans). Cost per span = wall time of the whole
   program (start-up, calls, export, flush at exit) / spans made.
2. Start-up: `python -c pass` and a program that imports openai, bare, under
   `traceroot-run` and under `opentelemetry-instrument`.
3. Peak memory: max RSS of each program above, from os.wait4.

Each contender has its own virtual environment under benchmarks/.venvs/ (built once with
`python -m venv` + pip, rebuilt when its requirements change): ours (this repository's
working tree, installed as a wheel at every run), the reference (`traceroot==0.5.0`, same
import name), langfuse, plain OpenTelemetry, and plain OpenTelemetry with the OpenInference
OpenAI instrumentor. Results are printed and written to benchmarks/results.md (not by
--quick).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PROGRAMS = HERE / "programs"
VENVS = HERE / ".venvs"
sys.path.insert(0, str(REPO / "tests"))

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
    # Also this repository, installed as users install it (a built wheel, not `pip install
    # -e`, whose import hook every process would pay for), reinstalled from the working tree
    # at every run.
    ours: bool = False

    def fingerprint(self) -> str:
        text = json.dumps([self.requirements, self.ours, sys.version_info[:2]])
        if self.ours:  # rebuild when our own dependencies change
            text += (REPO / "pyproject.toml").read_text()
        return hashlib.sha256(text.encode()).hexdigest()[:16]


OTEL_REQUIREMENTS = (
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-distro",
    "opentelemetry-instrumentation",
    "openai",  # for the start-up program; nothing instruments it in this venv
)
VENV_SPECS = (
    VenvSpec("traceroot", ("openai",), ("traceroot", "opentelemetry-sdk", "openai"), ours=True),
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


def _pip(python: Path, args: Sequence[str], log: Path) -> None:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args]
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    if done.returncode != 0:
        tail = log.read_text().splitlines()[-20:]
        raise SystemExit(f"pip failed for {python} (log {log}):\n" + "\n".join(tail))


def ensure_venv(spec: VenvSpec) -> Venv:
    """Create (once) the venv for `spec`; rebuilt when its requirements change."""
    path = VENVS / spec.name
    marker = path / ".bench-ready"
    python = path / "bin" / "python"
    fingerprint = spec.fingerprint()
    if not (marker.exists() and marker.read_text() == fingerprint and python.exists()):
        print(f"[setup] building venv {spec.name!r} in {path} (once) ...", flush=True)
        shutil.rmtree(path, ignore_errors=True)
        VENVS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
        log = VENVS / f"{spec.name}.pip.log"
        log.write_text("")
        _pip(python, ["-q", "--upgrade", "pip"], log)
        _pip(python, ["-q", *spec.requirements], log)
        marker.write_text(fingerprint)
    if spec.ours:
        print(f"[setup] installing this repository's working tree into {spec.name!r}", flush=True)
        log = VENVS / f"{spec.name}.pip.log"
        # setuptools' build/ keeps files deleted from the tree: a stale one would ship.
        shutil.rmtree(REPO / "build", ignore_errors=True)
        _pip(python, ["-q", "--no-deps", "--force-reinstall", str(REPO)], log)
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
    startups: list[float] = field(default_factory=list)
    made: list[int] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def contenders(url: str) -> list[Contender]:
    tr_env = {
        "TRACEROOT_API_KEY": "tr-bench-key",
        "TRACEROOT_HOST_URL": url,
        # Fixed git context for both TraceRoot SDKs: the benchmark measures tracing, not
        # the discovery of a repository (the programs run in an empty temporary directory).
        "TRACEROOT_GIT_REPO": "bench/bench",
        "TRACEROOT_GIT_REF": "0" * 40,
    }
    otel_env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/v1/traces"}
    langfuse_env = {
        "LANGFUSE_PUBLIC_KEY": "pk-lf-bench",
        "LANGFUSE_SECRET_KEY": "sk-lf-bench",
        "LANGFUSE_BASE_URL": url,
        "LANGFUSE_HOST": url,  # the older name, for older releases
    }
    return [
        Contender("traceroot", "traceroot (this repo), defaults", "traceroot",
                  "burst_traceroot.py", tr_env),
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
    venvs: dict[str, Venv], rx: CountingReceiver, runs: int, roots: int, children: int, cwd: Path
) -> list[BurstResult]:
    results = [BurstResult(c) for c in contenders(rx.url)]
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
            result.startups.append(report["startup_s"])
            result.made.append(report["spans"])
            result.delivered.append(rx.span_count)
            result.requests.append(rx.request_count)
            result.rss.append(run.maxrss_mb)
            print(
                f"  burst run {i + 1}/{runs} {c.key:<13} wall {run.wall_s:6.2f}s  "
                f"delivered {rx.span_count}/{report['spans']} in {rx.request_count} requests  "
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
    walls: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def startup_cases(url: str) -> list[StartupCase]:
    app = str(PROGRAMS / "app_openai.py")
    tr_env = {
        "TRACEROOT_API_KEY": "tr-bench-key",
        "TRACEROOT_HOST_URL": url,
        "TRACEROOT_GIT_REPO": "bench/bench",
        "TRACEROOT_GIT_REF": "0" * 40,
    }
    otel_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",  # the distro's default is gRPC
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    oi = " (+ OpenAI instrumentor)"
    return [
        StartupCase("bare-pass", "python -c pass", "traceroot", ["python", "-c", "pass"], {},
                    "bare-pass"),
        StartupCase("tr-pass", "traceroot-run python -c pass", "traceroot",
                    ["traceroot-run", "python", "-c", "pass"], tr_env, "bare-pass",
                    ("otel-pass", "otel-oi-pass")),
        StartupCase("otel-pass", "opentelemetry-instrument python -c pass", "otel",
                    ["opentelemetry-instrument", "python", "-c", "pass"], otel_env, "bare-pass"),
        StartupCase("otel-oi-pass", "opentelemetry-instrument python -c pass" + oi, "otel-openai",
                    ["opentelemetry-instrument", "python", "-c", "pass"], otel_env, "bare-pass"),
        StartupCase("bare-openai", "python app_openai.py", "traceroot", ["python", app], {},
                    "bare-openai"),
        StartupCase("tr-openai", "traceroot-run python app_openai.py", "traceroot",
                    ["traceroot-run", "python", app], tr_env, "bare-openai",
                    ("otel-openai", "otel-oi-openai")),
        StartupCase("otel-openai", "opentelemetry-instrument python app_openai.py", "otel",
                    ["opentelemetry-instrument", "python", app], otel_env, "bare-openai"),
        StartupCase("otel-oi-openai", "opentelemetry-instrument python app_openai.py" + oi,
                    "otel-openai", ["opentelemetry-instrument", "python", app], otel_env,
                    "bare-openai"),
    ]  # fmt: skip


def run_startup(venvs: dict[str, Venv], url: str, runs: int, cwd: Path) -> list[StartupCase]:
    cases = startup_cases(url)
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


def report(
    machine_text: str,
    burst: list[BurstResult],
    startup: list[StartupCase],
    venvs: dict[str, Venv],
    runs: int,
    startup_runs: int,
    roots: int,
    children: int,
    elapsed_s: float,
) -> str:
    lines: list[str] = []
    add = lines.append
    versions = "; ".join(
        f"{name}: " + ", ".join(f"{k} {v}" for k, v in venv.versions.items())
        for name, venv in venvs.items()
    )
    add("# traceroot benchmarks")
    add("")
    add(f"- Date: {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")
    add(f"- Machine: {machine_text}")
    add(f"- traceroot revision: {repo_revision()}")
    add(f"- Versions (per venv): {versions}")
    add(f"- Command: `python benchmarks/run.py` ({elapsed_s / 60:.1f} min)")
    add("")

    spans = roots * (1 + children)
    add(f"## 1. Burst: {roots} x (1 + {children}) = {spans:,} decorated calls, one thread")
    add("")
    add(
        f"Median of {runs} runs each; all contenders send OTLP/HTTP to the same loopback "
        "receiver. *Cost/span* = wall time of the whole program (interpreter start-up, imports, "
        "calls, export, flush at exit) / spans made. *vs baseline*: ratios to the plain "
        "OpenTelemetry pipeline whose queue is sized to deliver the burst. The wall time split: "
        "*start-up* (process start to the first call), *calls* (the calls on the calling "
        "thread, per span; the export thread competes with it for the GIL), *exit* (after the "
        "last call: the flush of what is still queued)."
    )
    add("")
    add(
        "| contender | delivered | cost/span | vs baseline | wall (min-max) | start-up | "
        "calls/span | exit | peak RSS | RSS vs baseline |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = next(r for r in burst if r.contender.key == "otel-sized")
    base_cost = _median(base.walls) / spans if base.walls else float("nan")
    base_rss = _median(base.rss)
    for r in burst:
        if not r.walls:
            add(f"| {r.contender.label} | failed: {r.failures[:1]} | | | | | | | | |")
            continue
        made = _median(r.made)
        cost = _median(r.walls) / made
        fraction = _median([d / m for d, m in zip(r.delivered, r.made, strict=True)])
        delivered = f"{fraction:.1%} ({int(_median(r.delivered)):,})"
        exits = [w - s - c for w, s, c in zip(r.walls, r.startups, r.calls, strict=True)]
        add(
            f"| {r.contender.label} | {delivered} | {cost * 1e6:.0f} µs | "
            f"{_ratio(cost, base_cost)} | {min(r.walls):.2f}-{max(r.walls):.2f} s | "
            f"{_median(r.startups):.2f} s | {_median(r.calls) / made * 1e6:.0f} µs | "
            f"{_median(exits):.2f} s | {_median(r.rss):.0f} MB | "
            f"{_ratio(_median(r.rss), base_rss)} |"
        )
    failures = [f"{r.contender.key}: {f}" for r in burst for f in r.failures]
    add("")

    add("## 2. Start-up and 3. peak memory")
    add("")
    add(
        f"Median wall time of {startup_runs} runs each (after one warm-up run); peak RSS of the "
        "process (both launchers exec the program in the same process). traceroot-run and "
        "opentelemetry-instrument both export to the loopback receiver. traceroot-run "
        "instruments OpenAI with the OpenInference instrumentor; *(+ OpenAI instrumentor)* "
        "rows run opentelemetry-instrument in a venv where that same instrumentor is installed, "
        "so it does the same work. The last two columns: traceroot-run's wall time over "
        "opentelemetry-instrument's on the same program, without / with that instrumentor."
    )
    add("")
    add(
        "| command | wall | vs bare python | peak RSS | RSS vs bare "
        "| / otel-instrument | / otel-instrument (+ OpenAI instr.) |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|")
    by_key = {c.key: c for c in startup}
    for c in startup:
        wall = _median(c.walls)
        bare = by_key[c.bare]
        versus = ["", ""]
        if c.versus:
            versus = [_ratio(wall, _median(by_key[k].walls)) for k in c.versus]
        add(
            f"| `{c.label}` | {wall * 1000:.0f} ms | {_ratio(wall, _median(bare.walls))} | "
            f"{_median(c.rss):.0f} MB | {_ratio(_median(c.rss), _median(bare.rss))} | "
            f"{versus[0]} | {versus[1]} |"
        )
        failures += [f"{c.key}: {f}" for f in c.failures]
    if failures:
        add("")
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
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 x 10 burst, 1 run each")
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    parser.add_argument("--setup-only", action="store_true", help="build the venvs and stop")
    args = parser.parse_args(argv)
    roots, children, runs, startup_runs = ROOTS, CHILDREN, args.runs, args.startup_runs
    if args.quick:
        roots, children, runs, startup_runs = 20, 10, 1, 2

    venvs = {spec.name: ensure_venv(spec) for spec in VENV_SPECS}
    if args.setup_only:
        return 0
    started = time.perf_counter()
    machine_text = machine()
    print(f"machine: {machine_text}", flush=True)
    with CountingReceiver() as rx, tempfile.TemporaryDirectory(prefix="trbench-") as tmp:
        cwd = Path(tmp)
        print(f"burst: {roots} x (1 + {children}) spans, {runs} run(s) each", flush=True)
        burst = run_burst(venvs, rx, runs, roots, children, cwd)
        print(f"start-up: {startup_runs} run(s) each", flush=True)
        startup = run_startup(venvs, rx.url, startup_runs, cwd)
    text = report(
        machine_text,
        burst,
        startup,
        venvs,
        runs,
        startup_runs,
        roots,
        children,
        time.perf_counter() - started,
    )
    print()
    print(text)
    if not args.quick or args.output != HERE / "results.md":
        args.output.write_text(text)
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

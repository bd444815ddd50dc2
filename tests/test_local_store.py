"""The local trace store: processes writing at once, the caps, a store that cannot be written."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import RunPython, clean_env
from otlp_receiver import OTLPReceiver
from sdk_helpers import check, receiver_env, warnings_in

from traceroot._local.records import SpanRow
from traceroot._local.store import Store

LAUNCHER = str(Path(sys.executable).with_name("traceroot-run"))

WORKERS = """
import multiprocessing, os, subprocess, sys
import traceroot
from traceroot import observe

@observe(name="leaf")
def leaf(i):
    return i

@observe(name="worker")
def worker(n):
    for i in range(25):
        leaf(i)

@observe(name="main", type="agent")
def main():
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=worker, args=(n,)) for n in range(4)]
    for p in procs:
        p.start()
    subprocess.run([sys.executable, "child.py"], check=True)
    for p in procs:
        p.join()
        assert p.exitcode == 0, p.exitcode

main()
print("done")
"""

CHILD = """
from traceroot import observe  # traced by the launcher's start-up hook, as any child

@observe(name="child_leaf")
def child_leaf(i):
    return i

@observe(name="child")
def child():
    for i in range(10):
        child_leaf(i)

child()
"""


def rows_in(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT trace_id, span_id, name FROM spans").fetchall()


def test_forked_workers_and_a_subprocess_all_land_once(tmp_path: Path):
    (tmp_path / "child.py").write_text(CHILD)
    store_dir = tmp_path / "store"
    (tmp_path / "workers.py").write_text(WORKERS)
    # Under the launcher, as a user runs it: the subprocess is traced and joins the trace.
    proc = check(
        subprocess.run(
            [LAUNCHER, sys.executable, "workers.py"],
            env=clean_env({"TRACEROOT_LOCAL_DIR": str(store_dir), "TRACEROOT_CONSOLE": "false"}),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert proc.stdout == "done\n"
    rows = rows_in(store_dir / "traces.db")
    names = [name for _, _, name in rows]
    # 1 main + 4 workers x (1 + 25 leaves) + the traced child: 1 + 10 leaves.
    assert names.count("main") == 1
    assert names.count("worker") == 4
    assert names.count("leaf") == 100
    assert names.count("child") == 1
    assert names.count("child_leaf") == 10
    assert len({span_id for _, span_id, _ in rows}) == len(rows) == 116
    assert len({trace_id for trace_id, _, _ in rows}) == 1  # children joined the parent's trace
    with sqlite3.connect(store_dir / "traces.db") as conn:
        name, count, root = conn.execute(
            "SELECT name, span_count, root_span_id FROM traces"
        ).fetchone()
    assert (name, count) == ("main", 116)
    assert root == next(span_id for _, span_id, n in rows if n == "main")


def test_the_launcher_keeps_the_demo_and_still_prints_the_tree(tmp_path: Path):
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [LAUNCHER, sys.executable, str(repo / "examples" / "agent.py")],
        env=clean_env({"TRACEROOT_LOCAL_DIR": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "traceroot: trace " in proc.stderr and "fake-llm [llm]" in proc.stderr
    assert "traceroot ui" in proc.stderr  # the first notice says where to look
    names = sorted(name for _, _, name in rows_in(tmp_path / "traces.db"))
    assert names == ["fake-llm", "get_weather", "weather_agent"]


def _row(trace: int, start: int, size: int = 10) -> SpanRow:
    return SpanRow(
        trace_id=f"{trace:032x}",
        span_id=f"{trace:016x}",
        parent_id=None,
        name=f"t{trace}",
        otel_kind="INTERNAL",
        start_ns=start,
        end_ns=start + 1,
        status="UNSET",
        status_message=None,
        service="svc",
        scope=None,
        attributes={"traceroot.span.input": "x" * size},
    )


def test_the_trace_cap_prunes_the_oldest_first(tmp_path: Path):
    store = Store(tmp_path / "traces.db", max_traces=10)
    for trace in range(1, 31):
        store.write([_row(trace, start=trace * 1000)])
    kept = [int(r["trace_id"], 16) for r in store.traces(limit=100)]
    assert len(kept) <= 10
    assert kept[0] == 30  # newest first, and the newest kept
    assert min(kept) > 20  # nothing older than the newest ten survives
    assert len(rows_in(tmp_path / "traces.db")) == len(kept)  # their spans went too


def test_the_size_cap_keeps_the_file_bounded(tmp_path: Path):
    cap = 2 * 1024 * 1024
    store = Store(tmp_path / "traces.db", max_traces=100_000, max_bytes=cap)
    for trace in range(1, 201):
        store.write([_row(trace, start=trace, size=50_000)])  # 10 MB written in all
    store.close()
    size = (tmp_path / "traces.db").stat().st_size
    assert size < 2 * cap  # freed pages are reused: the file stays near the cap
    newest = Store(tmp_path / "traces.db").traces(limit=1)
    assert newest[0]["name"] == "t200"


def test_a_span_sent_twice_is_kept_once(tmp_path: Path):
    store = Store(tmp_path / "traces.db")
    store.write([_row(1, 5)])
    store.write([_row(1, 5)])
    assert store.traces()[0]["span_count"] == 1
    assert len(rows_in(tmp_path / "traces.db")) == 1


PROGRAM = """
import sys
from traceroot import observe

@observe(name="step")
def step():
    return "ok"

for _ in range(3):
    step()
print("output unchanged")
sys.exit(3)
"""


def test_an_unwritable_store_warns_once_and_the_program_runs_on(
    run_python: RunPython, tmp_path: Path
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    # As root, permissions do not stop a write: a path through a regular file does, for anyone.
    proc = run_python(PROGRAM, env={"TRACEROOT_LOCAL_DIR": str(blocker / "store")})
    assert proc.returncode == 3
    assert proc.stdout == "output unchanged\n"
    warnings = warnings_in(proc.stderr, "cannot write the local trace store")
    assert len(warnings) == 1
    assert "not a directory" in warnings[0] and "TRACEROOT_LOCAL_DIR" in warnings[0]
    assert "Error(" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("traceroot: trace ") == 3  # the console view is unaffected


def test_a_read_only_database_warns_once(run_python: RunPython, tmp_path: Path):
    Store(tmp_path / "traces.db").write([_row(1, 1)])
    os.chmod(tmp_path / "traces.db", 0o444)
    read_only = "file:" + str(tmp_path / "traces.db") + "?mode=ro"
    # Root writes through file modes, so open the store the way a read-only mount would act.
    script = (
        "import sqlite3\n"
        "_connect = sqlite3.connect\n"
        f"sqlite3.connect = lambda *a, **k: _connect({read_only!r}, uri=True, "
        "**{x: y for x, y in k.items() if x != 'uri'})\n" + PROGRAM
    )
    proc = run_python(script, env={"TRACEROOT_LOCAL_DIR": str(tmp_path)})
    assert proc.returncode == 3 and proc.stdout == "output unchanged\n"
    warnings = warnings_in(proc.stderr, "cannot write the local trace store")
    assert len(warnings) == 1 and "readonly" in warnings[0]


def test_local_false_turns_the_store_off(run_python: RunPython, tmp_path: Path):
    check(
        run_python(
            PROGRAM.replace("sys.exit(3)", ""),
            env={"TRACEROOT_LOCAL_DIR": str(tmp_path / "store"), "TRACEROOT_LOCAL": "false"},
        )
    )
    assert not (tmp_path / "store").exists()


def test_local_true_keeps_a_copy_while_sending(
    run_python: RunPython, receiver: OTLPReceiver, tmp_path: Path
):
    env = receiver_env(receiver, TRACEROOT_LOCAL="true", TRACEROOT_LOCAL_DIR=str(tmp_path))
    check(run_python(PROGRAM.replace("sys.exit(3)", ""), env=env))
    sent = receiver.wait_for_spans(3, timeout=5)
    assert [s.name for s in sent] == ["step"] * 3
    stored = rows_in(tmp_path / "traces.db")
    assert sorted(span_id for _, span_id, _ in stored) == sorted(s.span_id for s in sent)


def test_sending_elsewhere_keeps_no_copy_by_default(
    run_python: RunPython, receiver: OTLPReceiver, tmp_path: Path
):
    env = receiver_env(receiver, TRACEROOT_LOCAL_DIR=str(tmp_path / "store"))
    check(run_python(PROGRAM.replace("sys.exit(3)", ""), env=env))
    receiver.wait_for_spans(3, timeout=5)
    assert not (tmp_path / "store").exists()


def test_a_full_disk_warns_once_and_the_program_runs_on(run_python: RunPython, tmp_path: Path):
    # A disk that fills up: the process may not grow any file past 200 kB (RLIMIT_FSIZE, with
    # SIGXFSZ ignored, is what a full file system looks like to a writer: the write fails).
    # The store's first writes fit; the large spans after them do not.
    script = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))\n"
        "import sys, time\n"
        "from traceroot import observe\n"
        "@observe\n"
        "def big(i, text):\n"
        "    return len(text)\n"
        "for i in range(40):\n"
        "    big(i, 'x' * 30_000)\n"
        "    time.sleep(0.02)\n"
        "print('output unchanged')\n"
        "sys.exit(3)\n"
    )
    proc = run_python(script, env={"TRACEROOT_LOCAL_DIR": str(tmp_path)})
    assert proc.returncode == 3 and proc.stdout == "output unchanged\n", proc.stderr
    warnings = warnings_in(proc.stderr, "cannot write the local trace store")
    assert len(warnings) == 1, proc.stderr
    assert "is the disk full?" in warnings[0] and "TRACEROOT_LOCAL_DIR" in warnings[0]
    assert "Error(" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("traceroot: trace ") == 40  # the console view is unaffected
    assert (tmp_path / "traces.db").stat().st_size <= 200_000

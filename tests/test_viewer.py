"""`traceroot ui` over real HTTP (the JSON the page reads, OTLP ingest); the terminal commands."""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import time
import urllib.error
import urllib.parse
from pathlib import Path

import pytest
from conftest import RunPython, clean_env
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sdk_helpers import check
from viewer_helpers import REPO, VIEWER, Viewer, corrupt_store, run_check, run_traced

from traceroot._local.records import SpanRow
from traceroot._local.store import Store

AGENT = REPO / "examples" / "agent.py"


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


def test_the_page_and_its_json_show_the_demo(store_dir: Path):
    check(run_traced(store_dir, AGENT))
    with Viewer(store_dir) as viewer:
        [listed] = viewer.wait_for_traces(1)
        assert listed["name"] == "weather_agent"
        assert (listed["session_id"], listed["user_id"]) == ("demo-session", "demo-user")
        assert listed["span_count"] == 3 and listed["tokens"] == 21 and listed["error_count"] == 0
        assert listed["start_us"] <= listed["end_us"]

        trace = viewer.get(f"/api/trace/{listed['trace_id'][:10]}")  # a prefix is enough
        assert trace["trace_id"] == listed["trace_id"]
        by_name = {s["name"]: s for s in trace["spans"]}
        llm = by_name["fake-llm"]["view"]
        assert llm["kind"] == "llm" and llm["model"] == "demo-model-1"
        assert llm["tokens"] == {"prompt": 9, "completion": 12, "total": 21}
        assert llm["parameters"] == {"temperature": 0.2}
        assert llm["messages"]["input"][0]["role"] == "user"
        assert "Tokyo" in llm["messages"]["input"][0]["content"]
        assert by_name["get_weather"]["view"]["output"] == "clear, 21°C"
        assert by_name["fake-llm"]["parent_id"] == by_name["weather_agent"]["span_id"]

        session = viewer.get("/api/session/demo-session")
        assert [t["trace_id"] for t in session["traces"]] == [listed["trace_id"]]
        assert "Tokyo" in session["traces"][0]["input"]

        page = urllib.request.urlopen(viewer.url + "/", timeout=10)
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        html = page.read().decode()
        assert '<script src="/app.js"' in html and "http" not in html.replace("http-equiv", "")


def test_filters_and_paging(store_dir: Path, tmp_path: Path):
    script = tmp_path / "many.py"
    script.write_text(
        "import sys\n"
        "from traceroot import observe, using_attributes\n"
        "@observe(name='turn')\n"
        "def turn(question):\n"
        "    if question == 'boom':\n"
        "        raise ValueError('no')\n"
        "    return question.upper()\n"
        "for i, q in enumerate(['alpha', 'beta', 'gamma', 'boom', 'delta']):\n"
        "    with using_attributes(session_id='s1' if i < 3 else 's2', user_id=f'u{i % 2}'):\n"
        "        try:\n"
        "            turn(q)\n"
        "        except ValueError:\n"
        "            pass\n"
    )
    check(run_traced(store_dir, script))
    with Viewer(store_dir) as viewer:
        assert len(viewer.wait_for_traces(5)) == 5
        assert len(viewer.get("/api/traces?session=s1")["traces"]) == 3
        assert len(viewer.get("/api/traces?user=u1")["traces"]) == 2
        [error] = viewer.get("/api/traces?errors=1")["traces"]
        assert error["error_count"] == 1
        [gamma] = viewer.get("/api/traces?q=gamm")["traces"]  # searches inputs
        assert "gamma" in gamma["input"]
        assert viewer.get("/api/traces?q=100%25")["traces"] == []  # % is a character
        assert len(viewer.get("/api/traces?q=turn")["traces"]) == 5  # and names
        assert viewer.get("/api/traces?service=nope")["traces"] == []
        first = viewer.get("/api/traces?limit=2")
        second = viewer.get(f"/api/traces?limit=2&before={first['next']}")
        third = viewer.get(f"/api/traces?limit=2&before={second['next']}")
        seen = [t["input"] for page in (first, second, third) for t in page["traces"]]
        assert len(seen) == len(set(seen)) == 5  # newest first, no gaps or repeats
        assert "delta" in seen[0]
        ordered = viewer.get("/api/session/s2")["traces"]
        assert ["boom" in ordered[0]["input"], "delta" in ordered[1]["input"]] == [True, True]
        assert ordered[0]["error"]["type"] == "ValueError"
        trace = viewer.get(f"/api/trace/{error['trace_id']}")
        assert "Traceback" in trace["spans"][0]["view"]["error"]["traceback"]


OTLP_PROGRAM = """
import sys
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

url, compression = sys.argv[1], sys.argv[2]
exporter = OTLPSpanExporter(
    endpoint=url + "/v1/traces",
    compression=Compression.Gzip if compression == "gzip" else Compression.NoCompression,
)
provider = TracerProvider(resource=Resource.create({"service.name": "other-sdk"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("plain")
with tracer.start_as_current_span("chat", attributes={"session.id": "otlp-session"}):
    with tracer.start_as_current_span("llm call") as span:
        span.set_attribute("openinference.span.kind", "LLM")
        span.set_attribute("llm.model_name", "gpt-test")
        span.set_attribute("llm.input_messages.0.message.role", "system")
        span.set_attribute("llm.input_messages.0.message.content", "Be brief.")
        span.set_attribute("llm.input_messages.1.message.role", "user")
        span.set_attribute("llm.input_messages.1.message.content", "Hi?")
        span.set_attribute("llm.output_messages.0.message.role", "assistant")
        span.set_attribute("llm.output_messages.0.message.content", "Hello.")
        span.set_attribute("llm.token_count.prompt", 7)
        span.set_attribute("llm.token_count.completion", 2)
        try:
            raise RuntimeError("rate limited")
        except RuntimeError as exc:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, "rate limited"))
provider.shutdown()
print("sent")
"""


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_otlp_from_the_plain_opentelemetry_sdk(
    run_python: RunPython, store_dir: Path, compression: str
):
    with Viewer(store_dir) as viewer:
        proc = check(run_python(OTLP_PROGRAM, args=[viewer.url, compression]))
        assert proc.stdout == "sent\n" and "Failed" not in proc.stderr
        [listed] = viewer.wait_for_traces(1)
        assert (listed["name"], listed["service"], listed["span_count"]) == ("chat", "other-sdk", 2)
        assert listed["error_count"] == 1 and listed["session_id"] == "otlp-session"
        trace = viewer.get(f"/api/trace/{listed['trace_id']}")
        llm = next(s for s in trace["spans"] if s["name"] == "llm call")
        view = llm["view"]
        assert [(m["role"], m["content"]) for m in view["messages"]["input"]] == [
            ("system", "Be brief."),
            ("user", "Hi?"),
        ]
        assert view["messages"]["output"][0]["content"] == "Hello."
        assert view["kind"] == "llm" and view["model"] == "gpt-test"
        assert view["tokens"] == {"prompt": 7, "completion": 2, "total": 9}
        assert view["error"]["type"] == "RuntimeError"
        assert "rate limited" in view["error"]["traceback"]
        assert llm["otel_kind"] == "INTERNAL" and llm["status"] == "ERROR"


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("POST", "/v1/traces", body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def test_requests_the_viewer_refuses(store_dir: Path):
    protobuf = {"Content-Type": "application/x-protobuf"}
    with Viewer(store_dir) as viewer:
        # DNS rebinding: a page on evil.example resolving its name to 127.0.0.1.
        with pytest.raises(urllib.error.HTTPError) as refused:
            viewer.get("/api/traces", headers={"Host": "evil.example:80"})
        assert refused.value.code == 403
        # A cross-site form can only send text/plain: no OTLP.
        assert _post(viewer.url, b"x", {"Content-Type": "text/plain"})[0] == 415
        origin = {**protobuf, "Origin": "http://evil.example"}
        assert _post(viewer.url, ExportTraceServiceRequest().SerializeToString(), origin)[0] == 403
        status, body = _post(viewer.url, b"\xff\xfe not protobuf", protobuf)
        assert status == 400 and b"not a valid OTLP" in body
        bomb = gzip.compress(b"\0" * (200 * 1024 * 1024))  # expands past the 128 MB bound
        gz = {**protobuf, "Content-Encoding": "gzip"}
        assert _post(viewer.url, bomb, gz)[0] == 400
        empty = ExportTraceServiceRequest().SerializeToString()
        assert _post(viewer.url, empty, protobuf)[0] == 200
        assert viewer.get("/api/traces")["traces"] == []


def test_binding_beyond_loopback_warns(store_dir: Path):
    viewer = Viewer(store_dir, "--host", "0.0.0.0")
    err = viewer.stop()
    assert "not loopback" in err and "--host 127.0.0.1" in err


def test_a_busy_port_names_the_fix(store_dir: Path):
    with Viewer(store_dir) as viewer:
        port = viewer.url.rsplit(":", 1)[1]
        proc = subprocess.run(
            [VIEWER, "--dir", str(store_dir), "ui", "--port", port],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1
    assert "already in use" in proc.stderr and "--port 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def _cli(store_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VIEWER, "--dir", str(store_dir), *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_traces_and_show_in_the_terminal(store_dir: Path, tmp_path: Path):
    check(run_traced(store_dir, AGENT))
    script = tmp_path / "escape.py"
    script.write_text(
        "from traceroot import observe\n"
        "@observe(name='painter')\n"
        "def painter():\n"
        "    return 'red \\x1b[31mALERT\\x1b[0m'\n"
        "painter()\n"
    )
    check(run_traced(store_dir, script))
    listing = check(_cli(store_dir, "traces")).stdout.splitlines()
    assert listing[0].split()[:2] == ["STARTED", "TRACE"]
    assert "painter" in listing[1] and "weather_agent" in listing[2]  # newest first
    agent_id = listing[2].split()[2]
    assert len(agent_id) == 32
    session = check(_cli(store_dir, "traces", "--session", "demo-session")).stdout
    assert agent_id in session and "painter" not in session

    shown = check(_cli(store_dir, "show", agent_id[:8])).stdout
    assert shown.startswith(f"trace {agent_id}")
    assert "`- weather_agent [agent]" in shown
    assert "fake-llm [llm]" in shown and "model=demo-model-1" in shown
    assert "user: Answer 'What's the weather in Tokyo?'" in shown
    assert "output: clear, 21°C" in shown
    assert 'input: {"city": "tokyo"}' in shown

    painter_id = listing[1].split()[2]
    painted = check(_cli(store_dir, "show", painter_id)).stdout
    assert "\x1b" not in painted and "\\x1b[31mALERT" in painted  # shown, not obeyed

    unknown = "0" * 32 if "0" * 32 not in (agent_id, painter_id) else "f" * 32
    missing = _cli(store_dir, "show", unknown)
    assert missing.returncode == 1 and "no trace in" in missing.stderr
    not_hex = _cli(store_dir, "show", "weather")
    assert not_hex.returncode == 1 and "'weather' is not a trace id" in not_hex.stderr


def test_show_with_an_id_start_that_fits_several_traces_lists_them(tmp_path: Path):
    store = Store(tmp_path / "traces.db")
    for trace_id in ("ab" + "1" * 30, "ab" + "2" * 30, "cd" + "3" * 30):
        store.write(
            [
                SpanRow(
                    trace_id=trace_id,
                    span_id="1" * 16,
                    parent_id=None,
                    name="n",
                    otel_kind="INTERNAL",
                    start_ns=1,
                    end_ns=2,
                    status="UNSET",
                    status_message=None,
                    service="svc",
                    scope=None,
                    attributes={},
                )
            ]
        )
    several = _cli(tmp_path, "show", "ab")
    assert several.returncode == 1
    assert "more than one trace has an id starting 'ab'" in several.stderr
    assert "ab" + "1" * 30 in several.stderr and "ab" + "2" * 30 in several.stderr
    one = check(_cli(tmp_path, "show", "c"))
    assert one.stdout.startswith("trace cd" + "3" * 30)


def test_an_empty_store_says_how_to_fill_it(tmp_path: Path):
    proc = _cli(tmp_path / "nothing", "traces")
    assert proc.returncode == 0 and "traceroot-run" in proc.stderr


FIX = "move it aside or delete it; traced programs then start a new one"


def _one_readable_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The command failed (exit 1) with one line, no traceback, holding every one of `words`."""
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr and "sqlite3" not in proc.stderr, proc.stderr
    [line] = proc.stderr.splitlines()
    for word in words:
        assert word in line, line
    return line


def test_a_store_that_is_not_a_database_is_named_with_the_fix(store_dir: Path):
    check(run_traced(store_dir, AGENT))
    path = corrupt_store(store_dir)
    for command in (["traces"], ["show", "abc"], ["traces", "--errors"]):
        proc = _cli(store_dir, *command)
        _one_readable_line(proc, str(path), "is not a readable trace store", FIX)
    # The writer side: one warning, and the program runs to its end.
    written = check(run_traced(store_dir, AGENT))
    assert written.stderr.count("cannot write the local trace store") == 1
    assert "Move that file aside or delete it" in written.stderr  # not "pick another folder"


def test_a_store_that_is_a_directory_is_named_with_the_fix(store_dir: Path):
    (store_dir / "traces.db").mkdir(parents=True)
    for command in (["traces"], ["show", "abc"]):
        proc = _cli(store_dir, *command)
        _one_readable_line(proc, str(store_dir / "traces.db"), "is a directory", FIX)


def test_an_empty_store_file_is_an_empty_store(store_dir: Path):
    store_dir.mkdir()
    (store_dir / "traces.db").write_bytes(b"")
    proc = _cli(store_dir, "traces")
    assert proc.returncode == 0 and "No traces yet" in proc.stderr, proc
    assert "Traceback" not in proc.stderr
    missing = _cli(store_dir, "show", "abc")
    assert missing.returncode == 1 and "no trace in" in missing.stderr
    check(run_traced(store_dir, AGENT))  # and programs fill it
    assert "weather_agent" in check(_cli(store_dir, "traces")).stdout


def test_the_viewer_says_once_that_it_cannot_read_the_store(store_dir: Path):
    check(run_traced(store_dir, AGENT))
    path = corrupt_store(store_dir)
    with Viewer(store_dir) as viewer:
        for _ in range(3):  # the page polls: each poll is answered, in words
            for api in ("/api/traces", "/api/version", "/api/facets", "/api/trace/abc"):
                status, body = viewer.get_error(api)
                assert status == 503
                assert str(path) in body["error"] and FIX in body["error"]
                assert "is not a readable trace store" in body["error"]
        status, body = viewer.get_error("/api/session/demo-session")
        assert status == 503 and FIX in body["error"]
        # Moved aside, the store starts afresh and the viewer reads it again.
        path.rename(store_dir / "damaged.db")
        assert viewer.get("/api/traces")["traces"] == []
        err = viewer.stop()
    assert "Traceback" not in err and "sqlite3" not in err, err
    assert err.count("is not a readable trace store") == 1, err  # once, not on every poll
    assert str(path) in err and FIX in err
    assert "readable again" in err


def test_the_viewer_of_a_directory_store_answers_in_words(store_dir: Path):
    (store_dir / "traces.db").mkdir(parents=True)
    with Viewer(store_dir) as viewer:
        status, body = viewer.get_error("/api/traces")
        assert status == 503 and "is a directory" in body["error"] and FIX in body["error"]
        err = viewer.stop()
    assert "Traceback" not in err and err.count("is a directory") == 1, err


def test_otlp_into_a_store_that_is_not_a_database_is_refused_in_words(store_dir: Path):
    corrupt_store(store_dir)
    with Viewer(store_dir) as viewer:
        for _ in range(2):
            status, body = _post(
                viewer.url,
                _one_span_request(),
                {"Content-Type": "application/x-protobuf"},
            )
            assert status == 503
            assert FIX in json.loads(body)["error"]
        err = viewer.stop()
    assert "Traceback" not in err and err.count("is not a readable trace store") == 1, err


def _one_span_request() -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes(range(16))
    span.span_id = bytes(range(8))
    span.name = "sent"
    span.start_time_unix_nano = time.time_ns()
    span.end_time_unix_nano = span.start_time_unix_nano + 1000
    return request.SerializeToString()


def test_the_check_span_is_not_listed_as_a_trace(store_dir: Path):
    checked = check(run_check(store_dir))
    assert "kept and read back" in checked.stdout
    check_id = checked.stdout.split("(trace ")[1].split(")")[0]
    proc = _cli(store_dir, "traces")
    assert proc.returncode == 0 and "No traces yet" in proc.stderr and proc.stdout == ""
    check(run_traced(store_dir, AGENT))
    listing = check(_cli(store_dir, "traces")).stdout
    assert "weather_agent" in listing and "--check" not in listing
    with Viewer(store_dir) as viewer:
        assert [t["name"] for t in viewer.wait_for_traces(1)] == ["weather_agent"]
        assert [t["name"] for t in viewer.get("/api/traces?q=check")["traces"]] == []
        assert viewer.get("/api/facets")["services"] == ["agent"]
        # Still there to read back by its id, as --check says.
        assert viewer.get(f"/api/trace/{check_id}")["name"] == "traceroot-run --check"
    assert check(_cli(store_dir, "show", check_id)).stdout.startswith(f"trace {check_id}")


BIDI_SCRIPT = """
from traceroot import observe

@observe(name="invoice\u202eexe.pdf")
def named(text):
    return "safe \u2066hidden\u2069 \u202aend"

named("abc\u202edef")
"""


def test_bidirectional_controls_are_shown_not_obeyed_in_the_terminal(
    store_dir: Path, tmp_path: Path
):
    script = tmp_path / "bidi.py"
    script.write_text(BIDI_SCRIPT)
    check(run_traced(store_dir, script))
    listing = check(_cli(store_dir, "traces")).stdout
    assert "invoice\\u202eexe.pdf" in listing
    trace_id = listing.splitlines()[1].split()[2]
    shown = check(_cli(store_dir, "show", trace_id)).stdout
    for control in ("\u202e", "\u2066", "\u2069", "\u202a"):
        assert control not in listing and control not in shown
    assert "invoice\\u202eexe.pdf [span]" in shown
    assert "abc\\u202edef" in shown  # the input
    assert "safe \\u2066hidden\\u2069 \\u202aend" in shown  # the output

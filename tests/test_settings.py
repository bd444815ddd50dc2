"""The settings table is the one source: README, config, initialize(), launcher options."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import pytest

import traceroot
from traceroot import _frozen as frozen
from traceroot._config import Config, load_config, mask_secret, safe_url
from traceroot._settings import BY_FIELD, SETTINGS, parse_bool, readme_table
from traceroot.cli.main import main as launcher

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_table_is_the_settings_table() -> None:
    assert readme_table() in README.read_text(), (
        "README's configuration table differs from traceroot/_settings.py; "
        "paste the output of `python -m traceroot._settings`"
    )


def test_the_docs_hold_no_merge_conflict_markers() -> None:
    # A merge left unresolved in prose is easy to miss: nothing else reads it.
    root = README.parent
    for path in [README, *sorted((root / "benchmarks").glob("*.md"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            marker = line.startswith(("<<<<<<< ", ">>>>>>> ")) or line == "======="
            assert not marker, f"{path.name}:{number}: a merge conflict marker"


def test_every_config_field_is_a_setting_or_derived_from_one() -> None:
    # shown_before: whether TRACEROOT_CONFIG_CHECKED says its warnings were shown already.
    derived = {"max_batch_size", "otlp_endpoint", "otlp_headers", "otlp", "refused", "shown_before"}
    fields = set(frozen.fields(Config))
    assert fields - derived == set(BY_FIELD)


def test_initialize_arguments_are_the_settings_arguments() -> None:
    parameters = set(inspect.signature(traceroot.initialize).parameters)
    declared = {s.argument for s in SETTINGS if s.argument}
    assert parameters - {"integrations", "redact"} == declared


def test_launcher_options_are_the_settings_options() -> None:
    names = {opt for param in launcher.params for opt in getattr(param, "opts", [])}
    for setting in SETTINGS:
        if setting.option:
            assert setting.option.split("/")[0] in names, setting.option
    help_text = launcher.get_help(launcher.make_context("traceroot-run", ["--check"]))
    for setting in SETTINGS:
        if setting.option:
            assert setting.variable in help_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), (" OFF ", False), ("Yes", True), ("0", False), ("flase", None), ("", None)],
)
def test_one_boolean_parser(raw: str, expected: bool | None) -> None:
    assert parse_bool(raw) is expected


def test_a_typo_in_a_boolean_warns_and_keeps_the_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "traceroot"):
        config = load_config(environ={"TRACEROOT_OTEL_INSTRUMENTORS": "flase"})
    assert config.otel_instrumentors is True
    (message,) = [r.getMessage() for r in caplog.records]
    assert "TRACEROOT_OTEL_INSTRUMENTORS='flase'" in message and "true or false" in message


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("TRACEROOT_FLUSH_INTERVAL", "1e10"),
        ("TRACEROOT_TIMEOUT", "1e10"),
        ("TRACEROOT_SHUTDOWN_TIMEOUT", "86400"),
        ("TRACEROOT_FLUSH_AT", "10000000000"),
        ("TRACEROOT_MAX_QUEUE_SIZE", "99999999999"),
        ("TRACEROOT_MAX_ATTRIBUTE_LENGTH", "-1"),
    ],
)
def test_numbers_out_of_bounds_warn_and_use_the_default(
    variable: str, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    setting = next(s for s in SETTINGS if s.variable == variable)
    with caplog.at_level(logging.WARNING, "traceroot"):
        config = load_config(environ={variable: raw})
    assert getattr(config, setting.field) == setting.default
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"'{raw}'" in message and setting.expected() in message


def test_a_key_with_a_newline_is_refused_and_never_printed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = "tr-supersecretvalue\nX-Injected: 1"
    with caplog.at_level(logging.WARNING, "traceroot"):
        config = load_config(environ={"TRACEROOT_API_KEY": key})
    assert config.api_key is None and config.destination.kind == "local"
    text = " ".join(r.getMessage() for r in caplog.records) + repr(config)
    assert "TRACEROOT_API_KEY" in text
    assert "supersecret" not in text and "Injected" not in text


def test_masking_holds_for_any_value() -> None:
    for secret in (
        "tr-0123456789abcdef",
        "short",
        "tr-abc\ndef-ghijkl",
        "ключ-секрет-очень-длинный",
    ):
        shown = mask_secret(secret)
        assert "\n" not in shown and secret not in shown
    assert (
        safe_url("http://user:hunter2@example.com:8080/x") == "http://user:***@example.com:8080/x"
    )


def test_header_values_are_masked_and_crlf_refused(caplog: pytest.LogCaptureFixture) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=hc-abcdef123456789,"
        "proxy-authorization=Basic%20c2VjcmV0OnBhc3M=,x-bad=evil%0d%0aInjected:%201",
    }
    with caplog.at_level(logging.WARNING, "traceroot"):
        config = load_config(environ=env)
    assert set(config.otlp_headers) == {"x-honeycomb-team", "proxy-authorization"}
    described = config.destination.describe() + repr(config)
    assert "hc-abcdef123456789" not in described and "c2VjcmV0" not in described
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "x-bad" in warnings and "OTEL_EXPORTER_OTLP_HEADERS" in warnings
    assert "evil" not in warnings and "Injected" not in warnings


@pytest.mark.parametrize("url", ["htps://app.example.com", "file:///etc/passwd", "ftp://host/x"])
def test_an_invalid_host_url_sends_the_key_nowhere(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "traceroot"):
        config = load_config(
            environ={"TRACEROOT_API_KEY": "tr-0123456789abcdef", "TRACEROOT_HOST_URL": url}
        )
    assert config.destination.kind == "local" and config.destination.endpoint is None
    assert config.console_enabled  # the local view stays
    (message,) = [r.getMessage() for r in caplog.records]
    assert "TRACEROOT_HOST_URL" in message and "not sent" in message


def test_a_password_in_the_host_url_is_never_shown() -> None:
    config = load_config(
        environ={
            "TRACEROOT_API_KEY": "tr-0123456789abcdef",
            "TRACEROOT_HOST_URL": "https://u:pw-s3cret@h.example",
        }
    )
    assert config.destination.endpoint is not None and "pw-s3cret" in config.destination.endpoint
    assert "pw-s3cret" not in repr(config) and "pw-s3cret" not in config.destination.describe()


def test_every_otlp_variable_is_declared_with_its_traces_twin_first() -> None:
    rows = [s for s in SETTINGS if s.scope == "otlp"]
    suffixes = {s.variables[1].removeprefix("OTEL_EXPORTER_OTLP_") for s in rows}
    assert suffixes == {
        "ENDPOINT",
        "HEADERS",
        "TIMEOUT",
        "COMPRESSION",
        "PROTOCOL",
        "CERTIFICATE",
        "CLIENT_KEY",
        "CLIENT_CERTIFICATE",
        "INSECURE",
    }
    for setting in rows:
        generic = setting.variables[1]
        assert setting.variables[0] == generic.replace("OTLP_", "OTLP_TRACES_", 1)


def test_the_otlp_rows_drive_the_exporter_settings(caplog: pytest.LogCaptureFixture) -> None:
    from traceroot._otlp_config import resolve_otlp

    env = {
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "NONE",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "morse",
    }
    with caplog.at_level(logging.WARNING, "traceroot"):
        otlp = resolve_otlp(env)
    assert (otlp.timeout, otlp.compression, otlp.protocol) == (2.5, "none", "http/protobuf")
    (message,) = [r.getMessage() for r in caplog.records]
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='morse'" in message and "grpc" in message

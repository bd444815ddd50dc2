"""The exporter for a destination: OTLP/HTTP (ours) or OTLP/gRPC (OpenTelemetry's)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from opentelemetry.sdk.trace.export import SpanExporter

from traceroot._otlp_config import OTLPSettings

logger = logging.getLogger("traceroot")


class Exporter(Protocol):
    """What the pipeline and `--check` read from an exporter besides `SpanExporter`'s API."""

    endpoint: str
    last_error: str | None
    last_status: int | None
    unreachable: bool
    final: bool
    delivered_in_last_export: int

    def hurry(self) -> None: ...
    def describe_route(self) -> list[tuple[str, str]]: ...


def make_exporter(
    kind: str,
    endpoint: str,
    headers: Mapping[str, str],
    settings: OTLPSettings,
    timeout: float,
    environ: Mapping[str, str] | None = None,
) -> SpanExporter | None:
    """The exporter for `endpoint`, or None (with one warning) when it cannot be had here."""
    from traceroot._export.transport import OTLPHTTPExporter

    if settings.timeout is not None and kind == "otlp":
        timeout = settings.timeout
    if kind == "otlp" and settings.protocol == "grpc":
        from traceroot._export.grpc import GRPCExporter, grpc_available

        if not grpc_available():
            variable = settings.sources.get("PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
            logger.warning(
                "traceroot: %s=grpc needs the gRPC exporter: pip install 'traceroot[grpc]'. "
                "Or send OTLP/HTTP instead (the Collector's port 4318) with %s=http/protobuf. "
                "No spans are sent until then.",
                variable,
                variable,
            )
            return None
        return GRPCExporter(endpoint, headers, timeout, settings)
    key_variable = "TRACEROOT_API_KEY" if kind == "traceroot" else "OTEL_EXPORTER_OTLP_HEADERS"
    return OTLPHTTPExporter(endpoint, headers, timeout, settings, environ, key_variable)

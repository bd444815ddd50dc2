"""Head sampling for high-volume services: which new traces are kept.

`TRACEROOT_SAMPLE_RATE` keeps that fraction of the traces started here, chosen
by trace id (the same rule as OpenTelemetry's `TraceIdRatioBased`, so every
process agrees on a trace id), and follows the parent's decision otherwise, so
a trace is kept or dropped whole across processes. Without it, the standard
`OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` apply (read by the SDK itself).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from traceroot._settings import BY_FIELD, Resolver

logger = logging.getLogger("traceroot")


def sample_rate(environ: Mapping[str, str] | None = None) -> float | None:
    """TRACEROOT_SAMPLE_RATE (see the settings table), or None when unset or invalid."""
    value = Resolver(environ).value(BY_FIELD["sample_rate"])
    return None if value is None else float(value)


class RateSampler(ParentBased):
    """Parent-based, keeping `rate` of new traces by trace id; `bound` is the id cut-off."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.bound = TraceIdRatioBased.get_bound_for_rate(rate)
        super().__init__(TraceIdRatioBased(rate))


def sampler_for(environ: Mapping[str, str] | None = None) -> RateSampler | None:
    """Our sampler when TRACEROOT_SAMPLE_RATE is set; None leaves it to the SDK (OTEL_ vars)."""
    rate = sample_rate(environ)
    return RateSampler(rate) if rate is not None else None


def describe(environ: Mapping[str, str] | None = None) -> str:
    """The fraction of new traces kept, and the variable that says so, for `--check`."""
    env = os.environ if environ is None else environ
    rate = sample_rate(env)
    if rate is not None:
        raw = env["TRACEROOT_SAMPLE_RATE"]
        return f"{rate:.4g} of new traces kept (TRACEROOT_SAMPLE_RATE={raw})"
    name = (env.get("OTEL_TRACES_SAMPLER") or "").strip().lower()
    if not name:
        return "every trace (TRACEROOT_SAMPLE_RATE unset)"
    arg = (env.get("OTEL_TRACES_SAMPLER_ARG") or "").strip()
    if name in ("always_on", "parentbased_always_on"):
        return f"every trace (OTEL_TRACES_SAMPLER={name})"
    if name in ("always_off", "parentbased_always_off"):
        return f"no trace (OTEL_TRACES_SAMPLER={name})"
    if name in ("traceidratio", "parentbased_traceidratio"):
        return f"{arg or '1.0'} of new traces kept (OTEL_TRACES_SAMPLER={name})"
    return f"decided by OTEL_TRACES_SAMPLER={name}"

"""Head sampling for high-volume services: which new traces are kept.

`TRACEROOT_SAMPLE_RATE` keeps that fraction of the traces started here, chosen
by trace id (the same rule as OpenTelemetry's `TraceIdRatioBased`, so every
process agrees on a trace id), and follows the parent's decision otherwise, so
a trace is kept or dropped whole across processes. Without it, the standard
`OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` apply, read from the settings table
like every other variable: a bad value is one warning naming it, and every trace
is kept (OpenTelemetry's own reading would stop tracing on a ratio above 1).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from traceroot._settings import BY_FIELD, Resolver

_FIXED: dict[str, Sampler] = {
    "parentbased_always_on": DEFAULT_ON,
    "parentbased_always_off": DEFAULT_OFF,
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
}


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


def sampler_for(rate: float | None, sampler: str, sampler_arg: float | None) -> Sampler:
    """The sampler of the resolved settings: TRACEROOT_SAMPLE_RATE's, else OTEL_TRACES_SAMPLER's.

    `parentbased_traceidratio` is a `RateSampler`: the same decisions, and light spans stay on.
    """
    if rate is not None:
        return RateSampler(rate)
    fixed = _FIXED.get(sampler)
    if fixed is not None:
        return fixed
    ratio = 1.0 if sampler_arg is None else sampler_arg
    if sampler == "traceidratio":  # the parent's decision is not followed
        return TraceIdRatioBased(ratio)
    return RateSampler(ratio)


def describe(environ: Mapping[str, str] | None = None) -> str:
    """The fraction of new traces kept, and the variable that says so, for `--check`."""
    env = os.environ if environ is None else environ
    resolver = Resolver(env)
    rate = sample_rate(env)
    if rate is not None:
        raw = env["TRACEROOT_SAMPLE_RATE"]
        return f"{rate:.4g} of new traces kept (TRACEROOT_SAMPLE_RATE={raw})"
    setting = BY_FIELD["sampler"]
    if not resolver.given(setting):
        return "every trace (TRACEROOT_SAMPLE_RATE unset)"
    name = resolver.value(setting)
    if name in ("always_on", "parentbased_always_on"):
        return f"every trace (OTEL_TRACES_SAMPLER={name})"
    if name in ("always_off", "parentbased_always_off"):
        return f"no trace (OTEL_TRACES_SAMPLER={name})"
    arg = resolver.value(BY_FIELD["sampler_arg"])
    ratio = 1.0 if arg is None else arg
    return f"{ratio:.4g} of new traces kept (OTEL_TRACES_SAMPLER={name})"

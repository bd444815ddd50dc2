"""The burst under Langfuse's `@observe`, configured by LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY
and LANGFUSE_BASE_URL (OTLP/HTTP to {base}/api/public/otel/v1/traces); everything else at its
defaults. Spans are flushed by the client's own exit hook.
"""

from __future__ import annotations

from langfuse import observe
from workload import CHILDREN, run


@observe(as_type="tool")
def child(i: int) -> int:
    return i * 2


@observe(as_type="agent")
def root(r: int) -> int:
    return sum(child(i) for i in range(CHILDREN))


run(root)

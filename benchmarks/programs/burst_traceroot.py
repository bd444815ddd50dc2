"""The burst under a TraceRoot SDK: this project's, or the reference 0.5.0 (same import name).

Configured as a user would, by TRACEROOT_API_KEY and TRACEROOT_HOST_URL; everything else at
its defaults. Spans are flushed by the SDK's own exit hook.
"""

from __future__ import annotations

from workload import CHILDREN, run

import traceroot
from traceroot import observe

traceroot.initialize()


@observe(type="tool")
def child(i: int) -> int:
    return i * 2


@observe(type="agent")
def root(r: int) -> int:
    return sum(child(i) for i in range(CHILDREN))


run(root)

"""A burst of traced calls under one root span, each call timed.

argv: N. Prints "calls=N slow=K longest=S": K calls took longer than 0.5 s (waiting
for room in the span queue), the longest took S seconds.
"""

import sys
import time

from traceroot import observe

N = int(sys.argv[1])
durations: list[float] = []


@observe(name="work", type="tool")
def work(i: int) -> int:
    return i


@observe(name="root", type="agent")
def root() -> None:
    clock = time.monotonic
    for i in range(N - 1):
        started = clock()
        work(i)
        durations.append(clock() - started)


root()
slow = sum(1 for d in durations if d > 0.5)
print(f"calls={len(durations)} slow={slow} longest={max(durations):.2f}", flush=True)

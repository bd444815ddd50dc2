"""Makes spans, says "ready", then waits for a signal. With --handler it has its own
SIGTERM handler, which prints and leaves with os._exit(7): no atexit flush after it, so
the spans arrive only if traceroot flushed before the handler ran."""

import os
import signal
import sys
import time

from traceroot import observe


@observe(name="tick")
def tick(i: int) -> int:
    return i


if "--handler" in sys.argv:

    def on_term(signum, frame):  # type: ignore[no-untyped-def]
        print("handler ran", flush=True)
        os._exit(7)

    signal.signal(signal.SIGTERM, on_term)

for i in range(3):
    tick(i)
print("ready", flush=True)
while True:
    time.sleep(0.1)

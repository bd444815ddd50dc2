"""Ends spans in a tight loop on the main thread while another thread sends the process
SIGTERM again and again: many of them land inside traceroot's own code, queuing a span,
perhaps inside one of its locks. With --handler the program's own handler counts them and
the program ends by itself once they stop ("made N caught M"); without, the first ends it.
"""

import os
import random
import signal
import sys
import threading
import time

from traceroot import observe

SIGNALS = 600


@observe(name="step")
def step(i: int) -> int:
    return i


caught = 0
if "--handler" in sys.argv:

    def on_term(signum, frame):  # type: ignore[no-untyped-def]
        global caught
        caught += 1

    signal.signal(signal.SIGTERM, on_term)


def storm() -> None:
    for _ in range(SIGNALS):
        time.sleep(random.uniform(0.0005, 0.003))
        os.kill(os.getpid(), signal.SIGTERM)


sender = threading.Thread(target=storm, daemon=True)
sender.start()
made = 0
while sender.is_alive():
    step(made)
    made += 1
print(f"made {made} caught {caught}", flush=True)

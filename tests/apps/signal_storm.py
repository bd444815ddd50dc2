"""Ends spans in a tight loop on the main thread while another thread sends the process a
signal again and again: many land inside traceroot's own code, queuing a span, perhaps
inside one of its locks. Prints "made N caught M" once the signals stop.

SIGTERM (the default): with --handler the program's own handler counts them; without,
the first one ends the program. SIGINT (--sigint): the program catches each
KeyboardInterrupt and goes on, as an agent's Ctrl-C that cancels one step does.
"""

import os
import random
import signal
import sys
import threading
import time

from traceroot import observe

SIGNUM = signal.SIGINT if "--sigint" in sys.argv else signal.SIGTERM
# As in a terminal: a process started in the background by a shell (CI) inherits SIGINT
# ignored, and Python then raises no KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)
# Fewer Ctrl-Cs: each is waited for until caught, and a few hundred find every window.
SIGNALS = 100 if SIGNUM == signal.SIGINT else 600


@observe(name="step")
def step(i: int) -> int:
    return i


caught = 0
if "--handler" in sys.argv:

    def on_term(signum, frame):  # type: ignore[no-untyped-def]
        global caught
        caught += 1

    signal.signal(signal.SIGTERM, on_term)

stopped = threading.Event()
back_in_loop = threading.Event()  # set inside the try: a signal now lands in the loop


def storm() -> None:
    for _ in range(SIGNALS):
        back_in_loop.wait(10)
        time.sleep(random.uniform(0.0005, 0.003))
        if SIGNUM == signal.SIGINT:  # the next one only once this one was caught
            back_in_loop.clear()
        os.kill(os.getpid(), SIGNUM)
    back_in_loop.wait(10)
    stopped.set()


step(0)  # tracing starts with the first span: the storm is about spans, not start-up
made = 1
threading.Thread(target=storm, daemon=True).start()
while True:
    try:
        back_in_loop.set()
        while not stopped.is_set():
            step(made)
            made += 1
        break
    except KeyboardInterrupt:
        caught += 1
print(f"made {made} caught {caught}", flush=True)

"""A Ctrl-C at every step of a decorated call, one step further each time, as a program
that catches KeyboardInterrupt and goes on (an agent REPL cancelling a step) meets it.

Python raises KeyboardInterrupt where it checks for signals: on entering a function and
after each call returns. A profile hook raises it there, at the k-th such point of the
call, for k = 1, 2, ... until 20 calls in a row end before their k-th point. After each,
two more calls must work: one in a new thread (a hang there is a lock left held, and the
program exits 3 naming where) and one here. Prints one JSON line of counts.
"""

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))  # the tests' own helpers
from ctrl_c import ctrl_c_at  # noqa: E402

from traceroot import observe  # noqa: E402


@observe(name="step")
def step(i: int) -> dict[str, int]:
    return {"i": i}


step(-1)  # tracing starts before the first Ctrl-C
interrupted = completed = 0
where: list[str] = []
k = quiet = 0
while quiet < 20:
    k += 1
    try:
        sys.setprofile(ctrl_c_at(k, where))
        try:
            step(k)
        finally:
            sys.setprofile(None)
        quiet += 1
        completed += 1
    except KeyboardInterrupt:
        quiet = 0
        interrupted += 1
    after = threading.Thread(target=step, args=(100_000 + k,), daemon=True)
    after.start()
    after.join(10)
    if after.is_alive():
        print(json.dumps({"hang_after": where[-1]}), flush=True)
        sys.exit(3)
    step(200_000 + k)
print(json.dumps({"interrupted": interrupted, "completed": completed, "k": k}), flush=True)

"""concurrent.futures.ProcessPoolExecutor: 20 traced tasks from inside a traced parent span.

argv: START [--init]. START is the workers' start method ("fork", "spawn", "forkserver").
The executor and its workers exist before the parent span (a first task starts them), so
only the task itself can carry the span that submitted it. --init calls
traceroot.initialize() (for running without traceroot-run).
"""

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import traceroot
from traceroot import observe

if "--init" in sys.argv:
    traceroot.initialize()


@observe(name="task")
def task(i: int) -> int:
    return i


def warm(i: int) -> int:
    return i


@observe(name="parent", type="agent")
def submit_all(executor: ProcessPoolExecutor) -> list:
    results = list(executor.map(task, range(10)))
    results += [executor.submit(task, i).result(timeout=30) for i in range(10, 20)]
    return results


if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1])
    with ProcessPoolExecutor(2, mp_context=context) as executor:
        executor.submit(warm, 0).result(timeout=30)  # the workers start outside the span
        print("done", sum(submit_all(executor)))

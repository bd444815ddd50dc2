"""multiprocessing pools: 200 traced tasks from inside a traced parent span.

argv: KIND [--init]. KIND is "with" (`with Pool(4) as p: p.map(...)`, the pool made
inside the parent span), "early" (the pool made before the span; every way of
submitting work) or "recycle" (made before the span, maxtasksperchild=1 and 40 tasks of
5, so 40 workers in turn, left by `with`).
--init calls traceroot.initialize() (for running without traceroot-run).
"""

import multiprocessing
import os
import sys

import traceroot
from traceroot import observe

if "--init" in sys.argv:
    traceroot.initialize()

TASKS = 200


@observe(name="task")
def task(i: int) -> int:
    return i


def pair(i: int, j: int) -> int:
    return task(i) + j


@observe(name="parent", type="agent")
def submit_all(pool) -> list:  # type: ignore[no-untyped-def]
    if sys.argv[1] == "recycle":  # 40 tasks of 5: 40 workers, one after another per slot
        return pool.map(task, range(TASKS), chunksize=5)
    if sys.argv[1] != "early":
        return pool.map(task, range(TASKS))
    results = pool.map(task, range(0, 50), chunksize=7)
    results += [pool.apply_async(task, (i,)).get(timeout=30) for i in range(50, 80)]
    results += [pool.apply(task, (80,))]
    results += list(pool.imap(task, range(81, 120)))
    results += sorted(pool.imap_unordered(task, range(120, 160), chunksize=3))
    results += pool.starmap(pair, [(i, 0) for i in range(160, 180)])
    results += pool.map_async(task, range(180, TASKS)).get(timeout=30)
    return results


def main() -> None:
    ctx = multiprocessing.get_context("fork")
    kind = sys.argv[1]
    if kind == "with":

        @observe(name="parent", type="agent")
        def parent() -> list:
            with ctx.Pool(4) as pool:
                return pool.map(task, range(TASKS))

        results = parent()
    elif kind == "early":
        pool = ctx.Pool(4)
        results = submit_all(pool)
        pool.close()
        pool.join()
    else:
        with ctx.Pool(4, maxtasksperchild=1) as pool:
            results = submit_all(pool)
    assert sorted(results) == list(range(TASKS)), results
    print("done", os.getpid(), flush=True)


if __name__ == "__main__":
    main()

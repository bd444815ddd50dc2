"""multiprocessing children, started with the method named in argv[1], inside a span."""

import multiprocessing
import os
import sys

from traceroot import observe


@observe(name="mp_child")
def work(n: int) -> int:
    return os.getpid()


@observe(name="mp_parent", type="agent")
def parent(method: str) -> int:
    ctx = multiprocessing.get_context(method)
    procs = [ctx.Process(target=work, args=(i,)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0, p.exitcode
    return os.getpid()


if __name__ == "__main__":
    parent(sys.argv[1])
    print("done", flush=True)

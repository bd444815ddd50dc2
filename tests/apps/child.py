"""A child process: one root span named after argv[1], whose output is the pid."""

import os
import sys
import threading

from traceroot import observe


@observe(name="child_" + sys.argv[1])
def child() -> int:
    return os.getpid()


@observe(name="thread_" + sys.argv[1])
def in_thread() -> int:
    return os.getpid()


if __name__ == "__main__":
    child()
    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()

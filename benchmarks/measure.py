"""Run one command and record its wall time and peak memory, like /usr/bin/time.

    python -S -I measure.py RESULT_FILE /abs/path/to/program [args...]

Peak RSS comes from os.wait4 on the command's own process. Linux carries a process's peak
RSS across exec, so the process must be forked from a small one: forked from the benchmark
harness it would start out with the harness's memory. This helper, started with -S -I and
importing nothing but builtins, stays below 9 MB, under any Python program measured. Writes
"WALL_SECONDS MAXRSS_KIB EXIT_CODE" to RESULT_FILE; the command gets BENCH_T0, the
wall-clock time it was started.
"""

import os
import sys
import time


def main() -> None:
    result_file, argv = sys.argv[1], sys.argv[2:]
    env = dict(os.environ)
    env["BENCH_T0"] = repr(time.time())  # lets a program tell its start-up from the rest
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    with open(result_file, "w") as out:
        out.write(f"{wall!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}\n")


main()

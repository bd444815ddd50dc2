"""Starts child.py twice inside a span: with the inherited env and with an explicit one."""

import os
import subprocess
import sys

from traceroot import observe

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.py")


@observe(name="parent", type="agent")
def parent() -> int:
    subprocess.run([sys.executable, CHILD, "inherited"], check=True)
    subprocess.run([sys.executable, CHILD, "explicit"], check=True, env={**os.environ, "X": "1"})
    return os.getpid()


if __name__ == "__main__":
    parent()
    # Outside any span the child starts its own trace.
    subprocess.run([sys.executable, CHILD, "outside"], check=True)

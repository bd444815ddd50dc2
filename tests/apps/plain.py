"""A plain traced script: two nested decorated calls, then exit with argv[1] (default 0)."""

import sys

from traceroot import observe


@observe(type="tool")
def lookup(query: str) -> str:
    return query.upper()


@observe(type="agent")
def agent(query: str) -> str:
    return lookup(query) + "!"


if __name__ == "__main__":
    print(agent("hello"), flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)

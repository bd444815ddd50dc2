import sys

from traceroot import observe


@observe(name="pkg_main", type="agent")
def main() -> str:
    return "from -m"


print(main())
sys.exit(0)

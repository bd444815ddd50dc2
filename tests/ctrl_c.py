"""A Ctrl-C at an exact point: KeyboardInterrupt raised where Python checks for signals."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any


def ctrl_c_at(k: int, where: list[str] | None = None) -> Callable[[FrameType, str, Any], None]:
    """A profile hook (`sys.setprofile`) raising KeyboardInterrupt at the k-th point Python
    checks for signals, as a Ctrl-C landing there would: on entering a function and after
    a call returns. `where` is told the point, for a failure's message."""
    seen = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal seen
        if event in ("call", "return", "c_return"):
            seen += 1
            if seen == k:
                sys.setprofile(None)
                if where is not None:
                    code = frame.f_code
                    where.append(f"{event} in {code.co_name} ({code.co_filename}:{frame.f_lineno})")
                raise KeyboardInterrupt

    return profile

"""Installed distributions, read straight from their metadata folders.

This runs at the start of every traced process. `importlib.metadata` costs tens
of milliseconds to import and searches `sys.path` again for every question; one
listing of `sys.path` answers them all here (the first entry wins, as for imports).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def normalize(name: str) -> str:
    """A distribution name in one spelling: `Foo_Bar.baz` -> `foo-bar-baz`."""
    return name.lower().replace("_", "-").replace(".", "-")


# Plain classes rather than dataclasses: making a dataclass costs about a millisecond of
# every traced process's start.
class Distribution:
    """One installed distribution's metadata folder (`*.dist-info` or `*.egg-info`)."""

    __slots__ = ("folder",)

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __repr__(self) -> str:
        return f"Distribution({self.folder!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Distribution) and other.folder == self.folder

    def __hash__(self) -> int:
        return hash(self.folder)

    def read_text(self, filename: str) -> str | None:
        """A metadata file's text, or None when it is absent."""
        try:
            with open(os.path.join(self.folder, filename), encoding="utf-8") as f:
                return f.read()
        except OSError:
            return None

    @property
    def requires(self) -> list[str]:
        """The `Requires-Dist` lines of the metadata headers."""
        text = self.read_text("METADATA") or self.read_text("PKG-INFO") or ""
        found = []
        for line in text.splitlines():
            if not line.strip():
                break  # the headers end here; the long description follows
            if line.startswith("Requires-Dist:"):
                found.append(line.partition(":")[2].strip())
        return found

    @property
    def version(self) -> str | None:
        """The `Version` metadata header, or None when it is missing."""
        text = self.read_text("METADATA") or self.read_text("PKG-INFO") or ""
        for line in text.splitlines():
            if not line.strip():
                break
            if line.startswith("Version:"):
                return line.partition(":")[2].strip() or None
        return None

    def top_level_modules(self) -> list[str]:
        """The top-level import names the distribution provides."""
        listed = self.read_text("top_level.txt")
        if listed:
            return [line.strip() for line in listed.splitlines() if line.strip()]
        names: set[str] = set()
        for line in (self.read_text("RECORD") or "").splitlines():
            parts = line.split(",", 1)[0].strip('"').split("/")
            first = parts[0]
            if len(parts) == 1 and first.endswith(".py"):
                names.add(first[:-3])
            elif (
                len(parts) > 1
                and parts[-1] == "__init__.py"
                and not first.endswith((".dist-info", ".data"))
                and first != "__pycache__"
            ):
                names.add(first)
        return sorted(names)


class EntryPoint:
    """An entry point, shaped like `importlib.metadata.EntryPoint` where it is used."""

    __slots__ = ("name", "value", "group", "dist")

    def __init__(self, name: str, value: str, group: str, dist: Distribution) -> None:
        self.name = name
        self.value = value
        self.group = group
        self.dist = dist

    def __repr__(self) -> str:
        return f"EntryPoint(name={self.name!r}, value={self.value!r}, group={self.group!r})"

    def load(self) -> Any:
        """Import the module and return the object the entry point names."""
        import importlib

        target = self.value.split("[", 1)[0].strip()
        module_name, _, attribute = target.partition(":")
        loaded: Any = importlib.import_module(module_name.strip())
        for part in filter(None, attribute.strip().split(".")):
            loaded = getattr(loaded, part)
        return loaded


_listing: list[dict[str, str]] = []


def _folders() -> dict[str, str]:
    if _listing:
        return _listing[0]
    found: dict[str, str] = {}
    for entry in sys.path:
        folder = entry or os.curdir
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        prefix = folder if folder.endswith(os.sep) else folder + os.sep
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                key = normalize(name.rsplit(".", 1)[0].split("-", 1)[0])
                if key not in found:
                    found[key] = prefix + name
    _listing.append(found)
    return found


def path_key(entries: list[str]) -> str:
    """`entries` (folders of `sys.path`) with their modification times, as one string.

    Installing or removing a distribution changes its folder's time: two processes with the
    same key see the same distributions, so one may use what the other found.
    """
    parts = []
    for entry in entries:
        try:
            stamp = os.stat(entry or os.curdir).st_mtime_ns
        except OSError:
            stamp = -1
        parts.append(f"{entry}={stamp}")
    return os.pathsep.join(parts)


def find(name: str) -> Distribution | None:
    """The installed distribution called `name`, if any."""
    folder = _folders().get(normalize(name))
    return Distribution(folder) if folder is not None else None


def installed(name: str) -> bool:
    """Whether a distribution called `name` is installed."""
    return normalize(name) in _folders()


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of `group`, reading only the files that declare the group."""
    found: list[EntryPoint] = []
    header = f"[{group}]"
    for folder in _folders().values():
        dist = Distribution(folder)
        text = dist.read_text("entry_points.txt")
        if not text or header not in text:
            continue
        section = None
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
            elif section == group and "=" in line:
                name, _, value = line.partition("=")
                found.append(EntryPoint(name.strip(), value.strip(), group, dist))
    return found

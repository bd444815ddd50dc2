"""Where the local store lives and how big it may grow."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from traceroot._settings import BY_FIELD, Resolver

DB_NAME = "traces.db"


@dataclass(frozen=True)
class LocalSettings:
    """The local store's settings, resolved once per process."""

    enabled: bool | None  # None: on only when nothing is sent elsewhere
    directory: Path
    max_traces: int
    max_bytes: int

    @property
    def path(self) -> Path:
        return self.directory / DB_NAME


def default_directory(environ: Mapping[str, str]) -> Path:
    """The per-user data directory: XDG on Linux, the platform's own place elsewhere."""
    if sys.platform == "win32":
        base = environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "traceroot"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "traceroot"
    xdg = environ.get("XDG_DATA_HOME")
    base_dir = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base_dir / "traceroot"


def local_settings(environ: Mapping[str, str] | None = None) -> LocalSettings:
    """The local store's settings (declared in the settings table) from the environment."""
    env = os.environ if environ is None else environ
    resolver = Resolver(env)
    directory = resolver.value(BY_FIELD["local_dir"])
    return LocalSettings(
        enabled=resolver.value(BY_FIELD["local"]),
        directory=Path(directory).expanduser() if directory else default_directory(env),
        max_traces=resolver.value(BY_FIELD["local_max_traces"]),
        max_bytes=resolver.value(BY_FIELD["local_max_mb"]) * 1024 * 1024,
    )

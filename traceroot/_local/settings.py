"""Where the local store lives and how big it may grow."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from traceroot._settings import Resolver, Setting

DEFAULT_MAX_TRACES = 10_000
DEFAULT_MAX_MB = 512
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


# setting: move to the settings table (these rows, and Config fields for them)
LOCAL_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "local",
        ("TRACEROOT_LOCAL",),
        "bool",
        None,
        "`true` keeps a copy in the local store (`traceroot ui`) even when sending; "
        "`false` turns the store off",
        default_text="local mode only",
        when_invalid="the store is on in local mode only",
    ),
    Setting(
        "local_dir",
        ("TRACEROOT_LOCAL_DIR",),
        "text",
        None,
        "directory of the local store (`traces.db`)",
        default_text="`$XDG_DATA_HOME/traceroot` or `~/.local/share/traceroot`",
    ),
    Setting(
        "local_max_traces",
        ("TRACEROOT_LOCAL_MAX_TRACES",),
        "int",
        DEFAULT_MAX_TRACES,
        "traces the local store keeps; the oldest are pruned first",
        minimum=1,
        maximum=10_000_000,
    ),
    Setting(
        "local_max_mb",
        ("TRACEROOT_LOCAL_MAX_MB",),
        "int",
        DEFAULT_MAX_MB,
        "size of the local store in MB; the oldest traces are pruned first",
        minimum=1,
        maximum=1_000_000,
    ),
)
_BY_FIELD = {s.field: s for s in LOCAL_SETTINGS}


def local_settings(environ: Mapping[str, str] | None = None) -> LocalSettings:
    """The local store's settings (declared in `LOCAL_SETTINGS`) from the environment."""
    env = os.environ if environ is None else environ
    resolver = Resolver(env)
    directory = resolver.value(_BY_FIELD["local_dir"])
    return LocalSettings(
        enabled=resolver.value(_BY_FIELD["local"]),
        directory=Path(directory).expanduser() if directory else default_directory(env),
        max_traces=resolver.value(_BY_FIELD["local_max_traces"]),
        max_bytes=resolver.value(_BY_FIELD["local_max_mb"]) * 1024 * 1024,
    )

"""Where the local store lives and how big it may grow."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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


def _warn(name: str, raw: str, expected: str, default: object) -> None:
    import logging

    logging.getLogger("traceroot").warning(
        "traceroot: %s=%r is not %s; using %s.", name, raw, expected, default
    )


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        _warn(name, raw, "a positive whole number", default)
        return default
    return value


# setting: move to the settings table
def local_settings(environ: Mapping[str, str] | None = None) -> LocalSettings:
    """Read the local store's settings from the environment.

    - TRACEROOT_LOCAL (bool, default unset): `true` keeps a local copy even when spans are
      sent to TraceRoot or an OTLP endpoint; `false` turns the store off; unset, the store
      is on only in local mode (no API key, no OTLP endpoint).
    - TRACEROOT_LOCAL_DIR (path, default the per-user data directory:
      `$XDG_DATA_HOME/traceroot`, else `~/.local/share/traceroot`): where `traces.db` lives.
    - TRACEROOT_LOCAL_MAX_TRACES (int >= 1, default 10000): traces kept; oldest pruned first.
    - TRACEROOT_LOCAL_MAX_MB (int >= 1, default 512): database size in MB; oldest pruned first.
    """
    env = os.environ if environ is None else environ
    raw = env.get("TRACEROOT_LOCAL", "").strip().lower()
    enabled: bool | None = None
    if raw in ("1", "true", "yes", "on"):
        enabled = True
    elif raw in ("0", "false", "no", "off"):
        enabled = False
    elif raw:
        _warn("TRACEROOT_LOCAL", raw, "true or false", "the default (on in local mode only)")
    directory_raw = env.get("TRACEROOT_LOCAL_DIR", "").strip()
    directory = Path(directory_raw).expanduser() if directory_raw else default_directory(env)
    return LocalSettings(
        enabled=enabled,
        directory=directory,
        max_traces=_positive_int(env, "TRACEROOT_LOCAL_MAX_TRACES", DEFAULT_MAX_TRACES),
        max_bytes=_positive_int(env, "TRACEROOT_LOCAL_MAX_MB", DEFAULT_MAX_MB) * 1024 * 1024,
    )

"""Reading a ``.env`` file into the program's environment, as ``flask run`` does."""

from __future__ import annotations

import io
import logging
from collections.abc import MutableMapping
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from dotenv.variables import parse_variables


class EnvFileError(Exception):
    """The file exists but cannot be read."""


def malformed_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, text)`` of each statement python-dotenv cannot parse."""
    found: list[tuple[int, str]] = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            source = binding.original.string
            # A statement's text starts with the blank lines before it.
            skipped = source[: len(source) - len(source.lstrip())].count("\n")
            found.append((binding.original.line + skipped, source.strip()))
    return found


def load_env_file(path: Path, env: MutableMapping[str, str]) -> list[str]:
    """Add the variables of ``path`` to ``env``, never overriding one already set.

    ``${VAR}`` references see ``env`` first, then earlier lines of the file.
    Returns one message per malformed line (which is skipped); raises
    ``EnvFileError`` when the file cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvFileError(f"cannot read {path}: {exc}") from exc
    problems = [
        f"{path} line {line}: cannot parse {snippet!r}; line skipped"
        for line, snippet in malformed_lines(text)
    ]
    # python-dotenv logs its own, file-less warning for those lines: we said it better.
    dotenv_logger = logging.getLogger("dotenv.main")
    was_disabled, dotenv_logger.disabled = dotenv_logger.disabled, True
    try:
        values = dotenv_values(stream=io.StringIO(text), interpolate=False)
        resolved = _interpolate(values, env)
    finally:
        dotenv_logger.disabled = was_disabled
    for key, value in resolved.items():
        env.setdefault(key, value)
    return problems


def _interpolate(
    values: MutableMapping[str, str | None], env: MutableMapping[str, str]
) -> dict[str, str]:
    # Same rule as load_dotenv(override=False): a variable already set wins over the file.
    resolved: dict[str, str] = {}
    for key, raw in values.items():
        if raw is None:  # a bare `NAME` line carries no value
            continue
        scope = {**resolved, **env}
        resolved[key] = "".join(atom.resolve(scope) for atom in parse_variables(raw))
    return resolved

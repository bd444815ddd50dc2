"""Reading a ``.env`` file into the program's environment, as ``flask run`` does."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import MutableMapping
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from dotenv.variables import parse_variables


class EnvFileError(Exception):
    """The file exists but cannot be read."""


# The name a statement starts with (`NAME=`, `NAME:`, `NAME value`, `export NAME=`).
_NAME = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)(?=[\s=:]|$)")


def _shown_name(statement: str) -> str | None:
    """The variable a statement names, when one can be made out and it is not shaped like a
    credential (a long run of letters and digits with no underscore: an AWS key id...)."""
    match = _NAME.match(statement)
    if match is None:
        return None
    name = match.group(1)
    if len(name) > 64 or (len(name) >= 16 and "_" not in name and any(c.isdigit() for c in name)):
        return None
    return name


def _why(statement: str, name: str | None) -> str:
    """What is wrong with a statement, in words that quote nothing of its value."""
    rest = statement.strip()
    if name is not None:
        rest = rest.removeprefix("export").strip().removeprefix(name).lstrip()
    if rest.startswith("=") and rest[1:].lstrip()[:1] in ("'", '"'):
        return "its quoted value has no closing quote"
    if rest.startswith(":"):
        return "expected NAME=value, found ':' after the name"
    return "expected NAME=value"


def malformed_lines(text: str) -> list[tuple[int, str | None, str]]:
    """``(line number, variable name or None, what is wrong)`` of each statement python-dotenv
    cannot parse. The statement's text is never returned: it may hold a secret."""
    found: list[tuple[int, str | None, str]] = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            source = binding.original.string
            # A statement's text starts with the blank lines before it.
            skipped = source[: len(source) - len(source.lstrip())].count("\n")
            name = _shown_name(source.strip())
            found.append((binding.original.line + skipped, name, _why(source, name)))
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
        f"{path} line {line}: cannot parse "
        + (f"the line of {name}" if name else "it")
        + f": {why} (the value is not shown); line skipped"
        for line, name, why in malformed_lines(text)
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

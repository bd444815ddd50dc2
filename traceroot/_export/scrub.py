"""Credentials scrubbed from captured content before it leaves the process.

Two kinds of rule. A value under a sensitive name (`api_key`, `password`,
`authorization`, ...) in JSON, a Python dict repr, `name=value` text or an
attribute key. And a value shaped like a credential (an OpenAI key, a JWT, a PEM
private key, ...) wherever it appears. Each match becomes `[scrubbed:<rule>]`:
the marker names the rule, never any part of the value.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from traceroot._settings import BY_FIELD, Resolver

logger = logging.getLogger("traceroot")


def marker(rule: str) -> str:
    """What replaces a scrubbed value."""
    return f"[scrubbed:{rule}]"


NAME_RULE = "sensitive-name"

# --- sensitive names ----------------------------------------------------------------

# A name is sensitive when one of its words is one of these...
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pass",  # `db_pass`, `smtp_pass`, `PGPASS`'s spelling; `bypass`, `compass` are one word
        "pwd",
        "passphrase",
        "secret",
        "token",
        "authorization",
        "auth",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "apikey",
        "privatekey",
    }
)
# ... or its words, run together, contain one of these (`x-api-key`, `secretAccessKey`) ...
_SECRET_PARTS = (
    "apikey",
    "privatekey",
    "secretkey",
    "accesskey",
    "signingkey",
    "encryptionkey",
    "password",
    "passwd",
    "clientsecret",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "sessiontoken",
    "bearertoken",
    "credential",
    "setcookie",
)
# ... unless its last word says it describes the secret rather than holds it
# (`token_count`, `max_tokens`, `token_type`, `api_key_id`, `password_policy`, and the
# token-usage breakdowns of LLM clients: LangChain's `input_token_details`).
_DESCRIPTIVE_WORDS = frozenset(
    {
        "details",
        "detail",
        "breakdown",
        "stats",
        "budget",
        "estimate",
        "count",
        "counts",
        "limit",
        "limits",
        "type",
        "types",
        "kind",
        "usage",
        "length",
        "len",
        "size",
        "id",
        "ids",
        "name",
        "names",
        "url",
        "uri",
        "path",
        "file",
        "env",
        "var",
        "policy",
        "required",
        "enabled",
        "expires",
        "expiry",
        "expiration",
        "ttl",
        "provider",
        "format",
        "hint",
        "tokens",
        "present",
        "set",
    }
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=4096)
def is_sensitive_name(name: str) -> bool:
    """Whether a value under `name` is a credential: `api_key` yes, `session_id` no."""
    words = [w for w in _WORD_SPLIT.split(_CAMEL.sub("_", name).lower()) if w]
    if not words or words[-1] in _DESCRIPTIVE_WORDS:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    joined = "".join(words)
    return any(part in joined for part in _SECRET_PARTS)


# Cheap test before the name rules: no key name can be sensitive without one of these.
# Searched in lower case: a case-insensitive alternation is several times slower.
_NAME_HINT = re.compile(r"pass|pwd|secret|token|auth|cookie|credential|key")

# `"name": value` in JSON, `'name': value` in a Python repr.
_QUOTED_KEY = re.compile(r"""(["'])([A-Za-z0-9_.\- ]{1,64})\1\s*:\s*""")
# `["name", value]` in JSON, `('name', value)` or `(b'name', b'value')` in a repr: a header
# or a form field as a pair in a list, as HTTP clients and ASGI hold them.
_LISTED_KEY = re.compile(r"""[\[(]\s*b?(["'])([A-Za-z0-9_.\- ]{1,64})\1\s*,\s*""")
_PAIR_END = re.compile(r"\s*[\])]")
# `\"name\": \"value\"` in JSON encoded inside a JSON string.
_ESCAPED_PAIR = re.compile(r"""\\(["'])([A-Za-z0-9_.\- ]{1,64})\\\1\s*:\s*\\\1(.*?)(?<!\\)\\\1""")
# `name=value` in URLs, command lines and environment-style text: found from the `=`
# (rare) and read backwards, rather than tried at every word.
_ASSIGNED_VALUE = re.compile(r"=([^\s&,;\"'<>=]+)")
_NAME_BEFORE = re.compile(r"(?<![A-Za-z0-9_])[A-Za-z][A-Za-z0-9_.\-]{0,63}\Z")
# `Name: value` at the start of a line, for header names only.
_HEADER_NAMES = (
    "authorization|proxy-authorization|cookie|set-cookie|x-api-key|api-key|x-auth-token|"
    "x-goog-api-key"
)
_HEADER = re.compile(rf"(?im)^([ \t]*(?:{_HEADER_NAMES}):[ \t]*)([^\r\n]+)")
_NUMBER = re.compile(r"-?\d[\d.eE+\-]*")
_PY_STRING = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""")
_DECODER = json.JSONDecoder()


def _value_end(text: str, start: int, quote: str) -> int | None:
    """Where the value starting at `text[start]` ends, or None for a value that is no secret."""
    if start >= len(text):
        return None
    first = text[start]
    if first == '"' or (first in "{[" and quote == '"'):
        try:
            _, end = _DECODER.raw_decode(text, start)
            return end
        except ValueError:  # cut short by the length bound, or not JSON after all
            pass
    if first in "'\"":
        match = _PY_STRING.match(text, start)
        return match.end() if match else len(text)
    if first in "{[":
        return _bracket_end(text, start)
    match = _NUMBER.match(text, start)
    return match.end() if match else None  # true/false/null/None: nothing to hide


def _bracket_end(text: str, start: int) -> int:
    """The end of a bracketed value, counting brackets (strings inside may fool it: rare)."""
    depth = 0
    for index in range(start, len(text)):
        char = text[index]
        if char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
            if depth == 0:
                return index + 1
    return len(text)


def _scrub_keyed_values(text: str, key: re.Pattern[str], listed: bool = False) -> str:
    """The values after sensitive names `key` finds replaced; `listed`: only in pairs."""
    out: list[str] = []
    position = 0
    for match in key.finditer(text):
        if match.start() < position or not is_sensitive_name(match.group(2)):
            continue
        start = match.end()
        value = start + 1 if listed and text.startswith(("b'", 'b"'), start) else start
        end = _value_end(text, value, match.group(1))
        if end is None or (listed and _PAIR_END.match(text, end) is None):
            continue  # a value that is no secret; in a list, one that is no pair
        if text.startswith("[scrubbed:", value + 1):
            continue  # a shape rule got there first, with a more telling marker
        quote = text[value] if text[value] in "'\"" else match.group(1)
        out.append(text[position:start])
        out.append(f"{quote}{marker(NAME_RULE)}{quote}")
        position = end
    if not out:
        return text
    out.append(text[position:])
    return "".join(out)


def _scrub_names(text: str) -> str:
    if _NAME_HINT.search(text.lower()) is None:
        return text
    if "," in text and ("[" in text or "(" in text):
        text = _scrub_keyed_values(text, _LISTED_KEY, listed=True)
    if ":" in text:
        text = _scrub_keyed_values(text, _QUOTED_KEY)
        if "\\" in text:
            text = _ESCAPED_PAIR.sub(_escaped_pair, text)
        text = _HEADER.sub(_header, text)
    if "=" in text:
        text = _scrub_assignments(text)
    return text


def _escaped_pair(match: re.Match[str]) -> str:
    if not is_sensitive_name(match.group(2)) or match.group(3).startswith("[scrubbed:"):
        return match.group(0)
    quote = "\\" + match.group(1)
    return f"{quote}{match.group(2)}{quote}: {quote}{marker(NAME_RULE)}{quote}"


def _header(match: re.Match[str]) -> str:
    if "[scrubbed:" in match.group(2):  # `Bearer [scrubbed:bearer-token]` says more
        return match.group(0)
    return match.group(1) + marker(NAME_RULE)


def _scrub_assignments(text: str) -> str:
    out: list[str] = []
    position = 0
    for match in _ASSIGNED_VALUE.finditer(text):
        equals = match.start()
        name = _NAME_BEFORE.search(text, max(position, equals - 64), equals)
        value = match.group(1)
        if name is None or value.startswith("[scrubbed:") or not is_sensitive_name(name.group()):
            continue
        out.append(text[position : match.start(1)])
        out.append(marker(NAME_RULE))
        position = match.end()
    if not out:
        return text
    out.append(text[position:])
    return "".join(out)


# --- credential shapes --------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A credential recognised by its form. `group`: the part replaced (0: the whole match)."""

    rule: str
    pattern: re.Pattern[str]
    hint: tuple[str, ...] = ()  # substrings one of which must be present (a cheap pre-test)
    group: int = 0
    check: Callable[[str], bool] | None = None


def _has_digit(value: str) -> bool:
    return any(c.isdigit() for c in value)


def _basic_credentials(value: str) -> bool:
    """`Basic <base64 of user:password>`, not "Basic information"."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        text = decoded.decode("ascii")
    except (binascii.Error, ValueError):
        return False
    return ":" in text and text.isprintable()


SHAPES: tuple[Shape, ...] = (
    Shape(
        "pem-private-key",
        re.compile(
            r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----"
            r"(?:.*?-----END ([A-Z0-9]+ )*PRIVATE KEY-----|.*\Z)",
            re.DOTALL,
        ),
        ("PRIVATE KEY",),
    ),
    Shape("anthropic-key", re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{20,}"), ("sk-ant-",)),
    Shape(
        "openai-key",
        re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
        ("sk-",),
        check=_has_digit,
    ),
    Shape(
        "aws-access-key",
        re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
        ("AKIA", "ASIA", "ABIA", "ACCA"),
    ),
    Shape(
        "github-token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
        ("gh", "github_pat_"),
    ),
    Shape("slack-token", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), ("xox",)),
    Shape(
        "slack-webhook",
        re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+"),
        ("hooks.slack.com",),
    ),
    Shape("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"), ("AIza",)),
    Shape(
        "stripe-key",
        re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("_live_", "_test_"),
    ),
    Shape("huggingface-token", re.compile(r"\bhf_[A-Za-z0-9]{30,}"), ("hf_",)),
    # More AI providers' and agent tools' keys, by their documented prefixes.
    Shape("groq-key", re.compile(r"\bgsk_[A-Za-z0-9]{20,}"), ("gsk_",)),
    Shape("xai-key", re.compile(r"\bxai-[A-Za-z0-9]{20,}"), ("xai-",)),
    Shape("replicate-token", re.compile(r"\br8_[A-Za-z0-9]{20,}"), ("r8_",)),
    Shape("langsmith-key", re.compile(r"\blsv2_(?:pt|sk)_[A-Za-z0-9_]{20,}"), ("lsv2_",)),
    Shape("tavily-key", re.compile(r"\btvly-[A-Za-z0-9_\-]{20,}"), ("tvly-",)),
    Shape("pinecone-key", re.compile(r"\bpcsk_[A-Za-z0-9_]{20,}"), ("pcsk_",)),
    Shape("gitlab-token", re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"), ("glpat-",)),
    Shape("npm-token", re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"), ("npm_",)),
    Shape(
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"),
        ("eyJ",),
    ),
    Shape(
        "bearer-token",
        re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/\-]{16,}=*)"),
        ("earer", "EARER"),
        group=1,
        check=_has_digit,
    ),
    Shape(
        "basic-credentials",
        re.compile(r"(?i)\bbasic\s+([A-Za-z0-9+/]{8,}={0,2})"),
        ("asic", "ASIC"),
        group=1,
        check=_basic_credentials,
    ),
    Shape(
        "url-password",
        # The user name may be empty: `redis://:password@host`.
        re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@\"'<>]*:([^\s@/\"'<>]+)@"),
        ("://",),
        group=1,
    ),
)


# One search (in lower case) telling whether any rule could match a short text.
_ANY_HINT = re.compile(
    "|".join(
        sorted({re.escape(h.lower()) for shape in SHAPES for h in shape.hint})
        + [_NAME_HINT.pattern]
    )
)
_SHORT = 512
# The texts whose outcome is remembered: at most this many, of at most this length (a few
# MB at most).
_REMEMBERED_TEXTS = 4096
_REMEMBERED_LENGTH = 1024
_SAME = "\0unchanged"  # what a remembered text that needed no change maps to


def _contains_one(text: str, hints: tuple[str, ...]) -> bool:
    # A loop, not any() over a generator: this runs for every rule on every text with a hint.
    for hint in hints:
        if hint in text:
            return True
    return False


def _replace(shape: Shape, match: re.Match[str]) -> str:
    value = match.group(shape.group)
    if value.startswith("[scrubbed:") or (shape.check is not None and not shape.check(value)):
        return match.group(0)
    if shape.group == 0:
        return marker(shape.rule)
    whole = match.group(0)
    start, end = match.start(shape.group) - match.start(), match.end(shape.group) - match.start()
    return whole[:start] + marker(shape.rule) + whole[end:]


class Scrubber:
    """Applies the shape rules, the custom patterns and the name rules to text."""

    def __init__(self, extra: tuple[tuple[str, re.Pattern[str]], ...] = ()) -> None:
        self._extra = extra
        # Texts seen before, with what they became. Most texts a traced program sends
        # repeat: system prompts, tool schemas, model names, paths, function names. (A
        # dict, cleared when full: a lookup is all the common case should cost.)
        self._seen: dict[str, str] = {}

    def text(self, text: str) -> str:
        """`text` with every credential replaced by its marker (the same object if none)."""
        seen = self._seen
        done = seen.get(text)
        if done is not None:
            return text if done is _SAME else done
        scrubbed = self._scrub(text)
        if scrubbed == text:
            scrubbed = text  # the rules may rebuild an equal string: the caller's own, then
        if len(text) <= _REMEMBERED_LENGTH:
            if len(seen) >= _REMEMBERED_TEXTS:
                seen.clear()
            seen[text] = _SAME if scrubbed is text else scrubbed
        return scrubbed

    def _scrub(self, text: str) -> str:
        for rule, pattern in self._extra:
            text = pattern.sub(marker(rule), text)
        # The common case, a short text with nothing to scrub, in one search. (Over a long
        # text, each rule's own hints are quicker than one search for all of them.)
        if len(text) <= _SHORT and _ANY_HINT.search(text.lower()) is None:
            return text
        for shape in SHAPES:
            if shape.hint and not _contains_one(text, shape.hint):
                continue
            text = shape.pattern.sub(functools.partial(_replace, shape), text)
        return _scrub_names(text)

    @staticmethod
    def sensitive_key(key: str) -> bool:
        """Whether an attribute key names a credential (its last dotted part is checked)."""
        return is_sensitive_name(key.rsplit(".", 1)[-1])


# --- settings -----------------------------------------------------------------------


def _split_patterns(value: str) -> list[str]:
    """Split on commas outside brackets, braces and parentheses (`\\d{2,5}` stays whole)."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
            continue
        if char == "\\":
            escaped = True
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


SCRUB = BY_FIELD["scrub"]
SCRUB_PATTERNS = BY_FIELD["scrub_patterns"]


def scrubber_from_environment(environ: Mapping[str, str] | None = None) -> Scrubber | None:
    """The scrubber TRACEROOT_SCRUB and TRACEROOT_SCRUB_PATTERNS ask for (None: off).

    A pattern that does not compile is skipped, with one warning naming the variable
    and the pattern's position (never the pattern: it may spell out a secret).
    """
    resolver = Resolver(environ)
    if not resolver.value(SCRUB):
        return None
    extra: list[tuple[str, re.Pattern[str]]] = []
    bad: list[str] = []
    sources = _split_patterns(resolver.value(SCRUB_PATTERNS) or "")
    for index, source in enumerate(sources, 1):
        try:
            extra.append((f"custom-{index}", re.compile(source)))
        except re.error as exc:
            bad.append(f"pattern {index} ({exc.msg})")
    if bad:
        logger.warning(
            "traceroot: TRACEROOT_SCRUB_PATTERNS: %s is not a valid regular expression and is "
            "ignored; the other patterns apply. Separate patterns with commas (a comma inside "
            "(), [] or {} belongs to its pattern).",
            ", ".join(bad),
        )
    return Scrubber(tuple(extra))

"""`using_attributes`: user, session, tags and metadata for every span started in a block.

The values live in the OpenTelemetry context under the OpenInference keys, so
OpenInference instrumentors copy them onto their spans; the stamping processor
copies them onto every other span.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry import context as context_api

from traceroot import _attributes as attr
from traceroot._errors import in_words
from traceroot._serialize import as_id, as_tags, to_jsonable

F = TypeVar("F", bound=Callable[..., Any])

# The merged metadata dict, kept beside its JSON form so nested blocks can merge it.
_METADATA_DICT_KEY = "traceroot.using_attributes.metadata"


def context_attributes(ctx: context_api.Context | None = None) -> dict[str, Any]:
    """The `using_attributes` values active in `ctx` (default: the current context)."""
    if ctx is None:
        ctx = context_api.get_current()  # once: this runs at every span start
    found = {}
    for key in _CONTEXT_KEYS:
        value = ctx.get(key)
        if value is not None:
            found[key] = tuple(value) if type(value) is list else value
    return found


logger = logging.getLogger("traceroot")

# OpenInference's keys for the prompt template a block's LLM calls fill in (0.5.0's
# `using_attributes(prompt_template=...)`); its instrumentors read them from the context too.
PROMPT_TEMPLATE = "llm.prompt_template.template"
PROMPT_TEMPLATE_VERSION = "llm.prompt_template.version"
PROMPT_TEMPLATE_VARIABLES = "llm.prompt_template.variables"

_CONTEXT_KEYS = (
    attr.USER_ID,
    attr.SESSION_ID,
    attr.METADATA,
    attr.TAG_TAGS,
    PROMPT_TEMPLATE,
    PROMPT_TEMPLATE_VERSION,
    PROMPT_TEMPLATE_VARIABLES,
)


class using_attributes:  # noqa: N801 - lowercase, as in the SDK docs and OpenInference
    """Attach user, session, tags and metadata to every span started inside the block.

    Works as `with`, `async with` and as a decorator. Nested blocks merge: inner
    values win, metadata dicts are merged, tags are added. `prompt_template`, its
    `prompt_template_version` and `prompt_template_variables` (a dict) go on the spans too.
    """

    def __init__(
        self,
        user_id: str | None = None,
        session_id: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        prompt_template: str | None = None,
        prompt_template_version: str | None = None,
        prompt_template_variables: dict[str, Any] | None = None,
    ) -> None:
        self._user_id = user_id
        self._session_id = session_id
        self._tags = tags
        self._metadata = metadata
        self._prompt = (prompt_template, prompt_template_version, prompt_template_variables)
        self._tokens: list[object] = []

    def _context(self) -> context_api.Context:
        ctx = context_api.get_current()
        if self._user_id:
            ctx = context_api.set_value(attr.USER_ID, as_id(self._user_id), ctx)
        if self._session_id:
            ctx = context_api.set_value(attr.SESSION_ID, as_id(self._session_id), ctx)
        if self._tags:
            outer = list(context_api.get_value(attr.TAG_TAGS, ctx) or ())  # type: ignore[call-overload]
            merged = outer + [t for t in as_tags(self._tags) if t not in outer]
            ctx = context_api.set_value(attr.TAG_TAGS, merged, ctx)
        if self._metadata:
            outer_meta = context_api.get_value(_METADATA_DICT_KEY, ctx) or {}
            given = self._metadata
            if not isinstance(given, Mapping):  # metadata="text": kept, under one key
                given = {"metadata": given}
            merged_meta = {**outer_meta, **to_jsonable(dict(given))}  # type: ignore[dict-item]
            ctx = context_api.set_value(_METADATA_DICT_KEY, merged_meta, ctx)
            ctx = context_api.set_value(attr.METADATA, json.dumps(merged_meta), ctx)
        template, version, variables = self._prompt
        if template is not None:
            ctx = context_api.set_value(PROMPT_TEMPLATE, str(template), ctx)
        if version is not None:
            ctx = context_api.set_value(PROMPT_TEMPLATE_VERSION, str(version), ctx)
        if variables is not None:
            text = json.dumps(to_jsonable(variables))
            ctx = context_api.set_value(PROMPT_TEMPLATE_VARIABLES, text, ctx)
        return ctx

    def __enter__(self) -> using_attributes:
        try:
            ctx = self._context()
        except Exception as exc:  # a value we cannot use must not break the block
            logger.warning("traceroot: using_attributes() ignored its values (%s)", in_words(exc))
            ctx = context_api.get_current()
        self._tokens.append(context_api.attach(ctx))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        context_api.detach(self._tokens.pop())  # type: ignore[arg-type]

    async def __aenter__(self) -> using_attributes:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._copy():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._copy():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def _copy(self) -> using_attributes:
        # A fresh manager per call keeps concurrent calls' tokens apart.
        return using_attributes(
            self._user_id, self._session_id, self._tags, self._metadata, *self._prompt
        )

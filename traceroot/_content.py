"""TRACEROOT_CAPTURE_CONTENT=false: spans keep their structure, timing, model and token
counts, and withhold every input, output, prompt and message (ours and the instrumentors')."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from traceroot import _attributes as attr
from traceroot._settings import BY_FIELD, Resolver

WITHHELD_CONTENT = "[withheld: TRACEROOT_CAPTURE_CONTENT=false]"

# Keys whose whole value is content.
_CONTENT_EXACT = frozenset(
    {
        attr.SPAN_INPUT,
        attr.SPAN_OUTPUT,
        attr.LLM_PROMPT,
        "input.value",
        "output.value",
        "llm.prompts",
        "reranker.query",
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    }
)
# Families of flattened keys (OpenInference messages, documents, embeddings; GenAI prompts).
_CONTENT_PREFIXES = (
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.prompts.",
    "llm.prompt_template.",
    "llm.choices.",
    "retrieval.documents.",
    "reranker.input_documents.",
    "reranker.output_documents.",
    "embedding.embeddings.",
    "gen_ai.prompt.",
    "gen_ai.completion.",
)
# ... of which these say how the content is shaped, not what it says: kept.
_STRUCTURE_SUFFIXES = (
    ".message.role",
    ".message.name",
    ".message_content.type",
    ".tool_call.id",
    ".tool_call.function.name",
    ".message.tool_call_id",
    ".document.id",
    ".document.score",
    ".finish_reason",
    ".role",
)

# OpenInference's own switches, set (unless the user set them) before instrumenting, so
# the instrumentors never even record the content we would withhold.
OPENINFERENCE_HIDING = (
    "OPENINFERENCE_HIDE_INPUTS",
    "OPENINFERENCE_HIDE_OUTPUTS",
    "OPENINFERENCE_HIDE_INPUT_MESSAGES",
    "OPENINFERENCE_HIDE_OUTPUT_MESSAGES",
    "OPENINFERENCE_HIDE_INPUT_IMAGES",
    "OPENINFERENCE_HIDE_INPUT_TEXT",
    "OPENINFERENCE_HIDE_OUTPUT_TEXT",
    "OPENINFERENCE_HIDE_EMBEDDING_VECTORS",
    "OPENINFERENCE_HIDE_EMBEDDINGS_VECTORS",
    "OPENINFERENCE_HIDE_EMBEDDINGS_TEXT",
    "OPENINFERENCE_HIDE_PROMPTS",
    "OPENINFERENCE_HIDE_CHOICES",
    "OPENINFERENCE_HIDE_RETRIEVAL_DOCUMENTS",
)


def is_content(key: str) -> bool:
    """Whether the value under `key` is captured content (an input, output, prompt, message)."""
    if key in _CONTENT_EXACT:
        return True
    return key.startswith(_CONTENT_PREFIXES) and not key.endswith(_STRUCTURE_SUFFIXES)


CAPTURE_CONTENT = BY_FIELD["capture_content"]


def capture_content_from_environment(environ: Mapping[str, str] | None = None) -> bool:
    """Whether TRACEROOT_CAPTURE_CONTENT lets inputs, outputs, prompts and messages through."""
    return bool(Resolver(environ).value(CAPTURE_CONTENT))


def hide_content_in_instrumentors(environ: MutableMapping[str, str] | None = None) -> None:
    """When content capture is off, turn on OpenInference's hide settings (user values win).

    To be called before any instrumentor is instrumented: OpenInference reads them then.
    """
    target = os.environ if environ is None else environ
    if capture_content_from_environment(target):
        return
    for name in OPENINFERENCE_HIDING:
        target.setdefault(name, "true")
    # The OpenTelemetry GenAI instrumentors' switch (off by their default already).
    target.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "false")

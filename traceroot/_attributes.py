"""Attribute keys of the TraceRoot wire contract, in one place."""

from __future__ import annotations

SDK_NAME = "traceroot.sdk.name"
SDK_VERSION = "traceroot.sdk.version"
GIT_REPO = "traceroot.git.repo"
GIT_REF = "traceroot.git.ref"
GIT_SOURCE_FILE = "traceroot.git.source_file"
GIT_SOURCE_LINE = "traceroot.git.source_line"
GIT_SOURCE_FUNCTION = "traceroot.git.source_function"
ENVIRONMENT = "traceroot.environment"
SPAN_PATH = "traceroot.span.path"
SPAN_IDS_PATH = "traceroot.span.ids_path"
SPAN_TYPE = "traceroot.span.type"
SPAN_INPUT = "traceroot.span.input"
SPAN_OUTPUT = "traceroot.span.output"
SPAN_METADATA = "traceroot.span.metadata"
SPAN_TAGS = "traceroot.span.tags"
TRACE_USER_ID = "traceroot.trace.user_id"
TRACE_SESSION_ID = "traceroot.trace.session_id"
TRACE_METADATA = "traceroot.trace.metadata"
TRACE_TAGS = "traceroot.trace.tags"
LLM_MODEL = "traceroot.llm.model"
LLM_MODEL_PARAMETERS = "traceroot.llm.model_parameters"
LLM_USAGE = "traceroot.llm.usage"
LLM_PROMPT = "traceroot.llm.prompt"
LLM_COST_TOTAL = "llm.cost.total"

# OpenInference context attributes set by `using_attributes`.
USER_ID = "user.id"
SESSION_ID = "session.id"
METADATA = "metadata"
TAG_TAGS = "tag.tags"

# OpenInference keys the console view and redaction read.
OI_SPAN_KIND = "openinference.span.kind"
OI_MODEL_NAME = "llm.model_name"
OI_TOKENS_PROMPT = "llm.token_count.prompt"
OI_TOKENS_COMPLETION = "llm.token_count.completion"

DECORATOR_SCOPE = "traceroot-sdk"
# Set on an LLM span that turned out to wrap the LLM calls it made (LiteLLM's `completion`
# with fallbacks: each attempt is an LLM span of its own under it). The export makes it a
# CHAIN span without token counts, which would count the calls' tokens twice; never sent.
WRAPS_LLM_CALLS = "traceroot.internal.wraps_llm_calls"
OI_TOKENS_TOTAL = "llm.token_count.total"

# What the backend needs to place and account a span: never shown to `redact`, never given
# way to other attributes under the attribute count limit.
BACKEND_KEYS = frozenset(
    {
        SPAN_PATH,
        SPAN_IDS_PATH,
        SPAN_TYPE,
        SPAN_TAGS,
        ENVIRONMENT,
        TRACE_USER_ID,
        TRACE_SESSION_ID,
        TRACE_TAGS,
        LLM_MODEL,
        LLM_USAGE,
        LLM_COST_TOTAL,
        USER_ID,
        SESSION_ID,
        TAG_TAGS,
        OI_SPAN_KIND,
        OI_MODEL_NAME,
        "llm.system",
        "llm.provider",
        "input.mime_type",
        "output.mime_type",
    }
)
# What a span's LLM usage is counted from: token counts and costs.
LLM_ACCOUNTING_PREFIXES = ("llm.token_count.", "llm.cost.")
BACKEND_PREFIXES = ("traceroot.sdk.", "traceroot.git.", *LLM_ACCOUNTING_PREFIXES)


def is_backend_key(key: str) -> bool:
    """Whether `key` is backend bookkeeping: `redact` never sees it, span limits never drop it."""
    return key in BACKEND_KEYS or key.startswith(BACKEND_PREFIXES)

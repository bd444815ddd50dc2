"""The integrations as data: one row per library, how it is detected, hooked and instrumented."""

from __future__ import annotations

from enum import Enum

from traceroot._frozen import record
from traceroot._settings import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

OI = "openinference.instrumentation"


class Integration(str, Enum):
    """A library to instrument; values match the reference TraceRoot SDK's."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    LANGCHAIN = "langchain"
    GOOGLE_GENAI = "google_genai"
    CREWAI = "crewai"
    OPENAI_AGENTS = "openai_agents"
    CLAUDE_AGENT_SDK = "claude_agent_sdk"
    LLAMA_INDEX = "llama_index"
    AUTOGEN = "autogen"
    AGNO = "agno"
    GROQ = "groq"
    DSPY = "dspy"
    GOOGLE_ADK = "google_adk"
    MISTRAL = "mistral"
    PYDANTIC_AI = "pydantic_ai"
    BEDROCK = "bedrock"
    AGENT_FRAMEWORK = "agent_framework"
    LITELLM = "litellm"

    def __str__(self) -> str:
        return self.value


@record
class Spec:
    """How one integration is detected, hooked and instrumented."""

    dists: tuple[str, ...]
    """Distributions providing the library; any one installed counts."""
    module: str
    """The module whose import triggers instrumentation."""
    instrumentor_dist: str
    """The distribution that carries the instrumentor."""
    instrumentor: str
    """``module:Class`` of an object with ``instrument(tracer_provider=...)``/``uninstrument()``."""
    extra: str | None = None
    """``traceroot[extra]`` that installs the instrumentor; None when it is a core dependency."""
    checks_versions: bool = True
    """Whether the instrumentor declines library versions outside those it declares
    (OpenInference's do); the adapters that only switch on a library's own spans do not."""
    first_call: tuple[str, ...] = ()
    """``module:Class.method`` of every method the instrumentor wraps, when every call into
    the library goes through one of them: while tracing has not started, the library is
    instrumented at the first call of one (see `first_call`), not at its import."""


OI = "openinference.instrumentation"

# The one registry. The first four are core dependencies; the rest are extras of the same name.
REGISTRY: dict[Integration, Spec] = {
    Integration.OPENAI: Spec(
        ("openai",),
        "openai",
        "openinference-instrumentation-openai",
        "traceroot._integrations.adapters:OpenAIInstrumentor",
        # Every request of the clients (and of Azure's, their subclasses) goes through these.
        first_call=("openai:OpenAI.request", "openai:AsyncOpenAI.request"),
    ),
    Integration.ANTHROPIC: Spec(
        ("anthropic",),
        "anthropic",
        "openinference-instrumentation-anthropic",
        "traceroot._integrations.adapters:AnthropicInstrumentor",
    ),
    # Keyed on langchain-core, which the instrumentor patches, so LangGraph-only apps count.
    Integration.LANGCHAIN: Spec(
        ("langchain-core",),
        "langchain_core",
        "openinference-instrumentation-langchain",
        "traceroot._integrations.adapters:LangChainInstrumentor",
    ),
    Integration.GOOGLE_GENAI: Spec(
        ("google-genai",),
        "google.genai",
        "openinference-instrumentation-google-genai",
        f"{OI}.google_genai:GoogleGenAIInstrumentor",
    ),
    Integration.CREWAI: Spec(
        ("crewai",),
        "crewai",
        "openinference-instrumentation-crewai",
        f"{OI}.crewai:CrewAIInstrumentor",
        "crewai",
    ),
    Integration.OPENAI_AGENTS: Spec(
        ("openai-agents",),
        "agents",
        "openinference-instrumentation-openai-agents",
        f"{OI}.openai_agents:OpenAIAgentsInstrumentor",
        "openai-agents",
    ),
    Integration.CLAUDE_AGENT_SDK: Spec(
        ("claude-agent-sdk",),
        "claude_agent_sdk",
        "openinference-instrumentation-claude-agent-sdk",
        "traceroot._integrations.adapters:ClaudeAgentSDKInstrumentor",
        "claude-agent-sdk",
    ),
    Integration.LLAMA_INDEX: Spec(
        ("llama-index-core",),
        "llama_index.core",
        "openinference-instrumentation-llama-index",
        f"{OI}.llama_index:LlamaIndexInstrumentor",
        "llama-index",
    ),
    # AG2 is imported as `autogen`; pyautogen is the same project under its old name.
    Integration.AUTOGEN: Spec(
        ("ag2", "pyautogen"),
        "autogen",
        "openinference-instrumentation-ag2",
        f"{OI}.ag2:AG2Instrumentor",
        "autogen",
    ),
    Integration.AGNO: Spec(
        ("agno",),
        "agno",
        "openinference-instrumentation-agno",
        f"{OI}.agno:AgnoInstrumentor",
        "agno",
    ),
    Integration.GROQ: Spec(
        ("groq",),
        "groq",
        "openinference-instrumentation-groq",
        f"{OI}.groq:GroqInstrumentor",
        "groq",
    ),
    Integration.DSPY: Spec(
        ("dspy", "dspy-ai"),
        "dspy",
        "openinference-instrumentation-dspy",
        "traceroot._integrations.adapters:DSPyInstrumentor",
        "dspy",
    ),
    Integration.GOOGLE_ADK: Spec(
        ("google-adk",),
        "google.adk",
        "openinference-instrumentation-google-adk",
        f"{OI}.google_adk:GoogleADKInstrumentor",
        "google-adk",
    ),
    # mistralai 2+ is a namespace package (no loader to hook); its client package is not.
    Integration.MISTRAL: Spec(
        ("mistralai",),
        "mistralai.client",
        "openinference-instrumentation-mistralai",
        f"{OI}.mistralai:MistralAIInstrumentor",
        "mistral",
    ),
    # Pydantic AI and Agent Framework emit spans natively; OpenInference ships span
    # processors that reshape them, which the adapters install.
    Integration.PYDANTIC_AI: Spec(
        ("pydantic-ai", "pydantic-ai-slim"),
        "pydantic_ai",
        "openinference-instrumentation-pydantic-ai",
        "traceroot._integrations.adapters:PydanticAIInstrumentor",
        "pydantic-ai",
        checks_versions=False,
    ),
    Integration.BEDROCK: Spec(
        ("boto3",),
        "boto3",
        "openinference-instrumentation-bedrock",
        f"{OI}.bedrock:BedrockInstrumentor",
        "bedrock",
    ),
    Integration.AGENT_FRAMEWORK: Spec(
        ("agent-framework-core",),
        "agent_framework",
        "openinference-instrumentation-agent-framework",
        "traceroot._integrations.adapters:AgentFrameworkInstrumentor",
        "agent-framework",
        checks_versions=False,
    ),
    Integration.LITELLM: Spec(
        ("litellm",),
        "litellm",
        "openinference-instrumentation-litellm",
        f"{OI}.litellm:LiteLLMInstrumentor",
        "litellm",
    ),
}


def pip_hint(integration: Integration) -> str:
    """The command that installs `integration`'s instrumentor."""
    spec = REGISTRY[integration]
    if spec.extra is not None:
        return f"pip install 'traceroot[{spec.extra}]'"
    return f"pip install {spec.instrumentor_dist}"


def parse_requested(
    requested: Sequence[Integration | str] | str | None, source: str, warn: bool = True
) -> list[Integration] | None:
    """The integrations ``requested`` names; None for "every one installed"."""
    if requested is None:
        return None
    if isinstance(requested, str):
        text = requested.strip().lower()
        if text in ("", "auto", "all"):
            return None
        if text == "none":
            return []
        names: Iterable[Integration | str] = text.split(",")
    else:
        names = requested
    chosen: list[Integration] = []
    for name in names:
        if isinstance(name, Integration):
            chosen.append(name)
            continue
        key = str(name).strip().lower().replace("-", "_")
        if not key:
            continue
        try:
            chosen.append(Integration(key))
        except ValueError:
            if not warn:  # said by activation, in the process that activates
                continue
            valid = ", ".join(member.value for member in Integration)
            logger.warning(
                "traceroot: unknown integration %r in %s; valid values: %s, all, none",
                str(name).strip(),
                source,
                valid,
            )
    return list(dict.fromkeys(chosen))

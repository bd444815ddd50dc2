"""Libraries traceroot can instrument, and the registry that instruments them on import."""

from __future__ import annotations

from enum import Enum


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

"""A small offline agent: a tool, a hand-rolled LLM call, a user session.

Run it with no TRACEROOT_API_KEY and its trace tree is printed to stderr:

    python examples/agent.py          # or: traceroot-run python examples/agent.py
"""

from __future__ import annotations

import time

import traceroot
from traceroot import observe, update_current_span, using_attributes

traceroot.initialize()

FORECASTS = {"paris": "light rain, 14°C", "tokyo": "clear, 21°C"}


@observe(type="tool")
def get_weather(city: str) -> str:
    """Look the city up in a local table (stands in for a weather API)."""
    time.sleep(0.01)
    return FORECASTS.get(city.lower(), "unknown")


@observe(name="fake-llm", type="llm")
def call_model(prompt: str, temperature: float = 0.2) -> str:
    """A deterministic stand-in for a chat model, reporting what a real one would."""
    time.sleep(0.02)
    update_current_span(
        model="demo-model-1",
        model_parameters={"temperature": temperature},
        usage={"input_tokens": len(prompt.split()), "output_tokens": 12},
        prompt=[{"role": "user", "content": prompt}],
    )
    return f"Here is the forecast you asked for: {prompt.rsplit(':', 1)[-1].strip()}"


@observe(type="agent")
def weather_agent(question: str) -> str:
    """Pick the city, call the tool, let the model phrase the answer."""
    city = next((c for c in FORECASTS if c in question.lower()), "paris")
    forecast = get_weather(city)
    return call_model(f"Answer '{question}' using: {forecast}")


if __name__ == "__main__":
    with using_attributes(user_id="demo-user", session_id="demo-session"):
        print(weather_agent("What's the weather in Tokyo?"))

"""The server benchmark's app: a FastAPI endpoint that runs an `@observe` agent, which calls
an `@observe` tool and then OpenAI (a fast loopback fake at BENCH_OPENAI_URL).

Traced, it runs under `traceroot-run uvicorn server_app:app`, configured by the launcher
alone. With BENCH_UNTRACED=1 it is the same app with an identity decorator and no traceroot
import at all, under plain `uvicorn`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import openai
from fastapi import FastAPI

if os.environ.get("BENCH_UNTRACED") == "1":

    def observe(**_: Any) -> Callable[[Any], Any]:
        return lambda fn: fn

else:
    from traceroot import observe

client = openai.AsyncOpenAI(api_key="sk-bench", base_url=os.environ["BENCH_OPENAI_URL"])
app = FastAPI()


@observe(type="tool")
def lookup(question: str) -> dict[str, Any]:
    return {"question": question, "facts": ["the answer is a number", "it is even"]}


@observe(type="agent")
async def agent(question: str) -> str:
    facts = lookup(question)
    response = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Answer from the facts: " + "; ".join(facts["facts"])},
            {"role": "user", "content": question},
        ],
    )
    return response.choices[0].message.content or ""


@app.get("/ask")
async def ask(q: str = "what is the answer?") -> dict[str, str]:
    return {"answer": await agent(q)}

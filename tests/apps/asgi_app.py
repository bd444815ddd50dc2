"""An ASGI app for uvicorn: each request makes a span whose output is the worker pid."""

import asyncio
import os

from traceroot import observe


@observe(name="handle")
async def handle(path: str) -> int:
    await asyncio.sleep(0.05)  # keep a worker busy so concurrent requests reach the others
    return os.getpid()


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    pid = await handle(scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(pid).encode()})

"""A FastAPI service with no traceroot code: under traceroot-run its requests become spans."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/work")
def work() -> dict[str, bool]:
    return {"ok": True}

"""A steady load: CONCURRENCY keep-alive connections, each sending its next GET as soon as
the last answer arrived, for WARMUP + DURATION seconds. Only requests that start after the
warm-up are measured. Stdlib only (asyncio streams), far cheaper per request than the
server it drives.

    python loadgen.py PORT PATH CONCURRENCY WARMUP_S DURATION_S

Prints one JSON line: requests measured, errors, requests per second, latency percentiles
(ms), and all requests answered (warm-up included).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def _worker(
    port: int, request: bytes, t_measure: float, t_end: float, out: list[float], stats: dict
) -> None:
    reader = writer = None
    while time.perf_counter() < t_end:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            done = time.perf_counter()
            stats["answered"] += 1
            if status != 200:
                stats["errors"] += 1
            elif start >= t_measure:
                out.append(done - start)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            stats["errors"] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def _main(port: int, path: str, concurrency: int, warmup: float, duration: float) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    now = time.perf_counter()
    t_measure, t_end = now + warmup, now + warmup + duration
    latencies: list[float] = []
    stats = {"answered": 0, "errors": 0}
    await asyncio.gather(
        *(_worker(port, request, t_measure, t_end, latencies, stats) for _ in range(concurrency))
    )
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    report = {
        "requests": len(latencies),
        "errors": stats["errors"],
        "answered": stats["answered"],
        "rps": len(latencies) / duration,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
    }
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    port_, path_, conc_, warm_, dur_ = sys.argv[1:6]
    asyncio.run(_main(int(port_), path_, int(conc_), float(warm_), float(dur_)))

"""Scenario 5: a client that stops reading while the server pushes at it.

    python -m bench.slow_consumer

The client asks the `push` route to start pushing (1 KiB frames, 64 every millisecond, a
task per frame, the way a broadcaster that does not wait for each client pushes), then
stops reading. Once the kernel's socket buffers and uvicorn's write buffer are full, every
further frame waits in the server. The router bounds that wait (`max_queued_pushes`, then
its slow-consumer policy: close 1013, or drop the oldest push); the bare app has no bound.
The server's RSS is sampled every 100 ms for BENCH_SLOW_SECONDS (5 s); the report gives
the peak above the RSS before the push started, and how the connection ended.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench._harness import Server, contenders, env_float, loadgen_interactive, save

#: the bare app shows what no bound costs; the original package has no push API
NAMES = ["bare", "router", "router_drop", "adapter"]
LIMIT_KIB = 2 * 1024 * 1024  # stop a contender that passes 2 GiB


def measure(name: str, seconds: float) -> dict[str, Any]:
    server = Server(name)
    try:
        before = server.rss_kib()
        client = loadgen_interactive({"mode": "slow", "url": server.url})
        assert client.stdin is not None and client.stdout is not None
        try:
            client.stdout.readline()  # {"paused": true}
            start = time.monotonic()
            samples: list[tuple[float, int]] = []
            while (elapsed := time.monotonic() - start) < seconds:
                rss = server.rss_kib()
                samples.append((round(elapsed, 2), rss))
                if rss > LIMIT_KIB:
                    break
                time.sleep(0.1)
            client.stdin.write("\n")
            client.stdin.flush()
            out = client.stdout.read()
            client.wait(30)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    finally:
        server.stop()
    ended = json.loads(out.strip().splitlines()[-1])
    peak = max(rss for _, rss in samples)
    half = [rss for t, rss in samples if t <= seconds / 2]
    return {
        "rss_before_kib": before,
        "peak_growth_kib": peak - before,
        "growth_first_half_kib": (max(half) - before) if half else None,
        "samples": samples,
        "close_code": ended["close_code"],
        "frames": ended["frames_after_resume"],
    }


def main() -> None:
    names, missing = contenders(NAMES)
    seconds = env_float("BENCH_SLOW_SECONDS", 5.0, 1.0)
    runs: list[dict[str, Any]] = []
    for name in names:
        result = measure(name, seconds)
        result["contender"] = name
        runs.append(result)
        print(
            f"{name:<12} peak +{result['peak_growth_kib'] / 1024:7.1f} MiB "
            f"(first half +{(result['growth_first_half_kib'] or 0) / 1024:7.1f} MiB)  "
            f"close {result['close_code']}",
            flush=True,
        )
    print(f"wrote {save('slow_consumer', {'runs': runs, 'missing': missing, 'seconds': seconds})}")


if __name__ == "__main__":
    main()

"""Large bodies (plain /metrics, the API's list) go out with the loop given a turn every
slice, even to a reader that takes everything as fast as it comes."""

from __future__ import annotations

import asyncio
import gc
import shutil
import time

import pytest
from aiohttp import web

from bridgemon.web.app import _send_pieces
from tests.conftest import free_port


async def _longest_step_while_sent(port: int, size: int) -> float:
    """The loop's longest step while curl, another process reading as fast as loopback
    goes, downloads the body."""
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    curl = await asyncio.create_subprocess_exec(  # (forking is a long step of its own)
        "curl", "-s", "-o", "/dev/null", "-w", "%{size_download}",
        f"http://127.0.0.1:{port}/big", stdout=asyncio.subprocess.PIPE)
    ticker = asyncio.ensure_future(tick())
    try:
        out, _ = await asyncio.wait_for(curl.communicate(), 30)
    finally:
        ticker.cancel()
    assert int(out) == size
    return max(gaps)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl missing (.ci/run installs it)")
async def test_a_large_body_gives_the_loop_a_turn_every_slice() -> None:
    # 600 pieces of 500 lines (21 MB, a national /metrics' shape). The socket on loopback
    # rarely fills, so write() alone hardly ever waited: steps of 16-23 ms here while the
    # kernel took a few MB (35-42 ms for a national /metrics in the daemon).
    pieces = [tuple(b'bridgemon_site_rtt_seconds{site="c%d",stat="avg"} 0.000%d\n' % (i, j)
                    for j in range(500)) for i in range(600)]
    size = sum(len(line) for lines in pieces for line in lines)

    async def handler(request: web.Request) -> web.StreamResponse:
        return await _send_pieces(request, list(pieces), {"Content-Type": "text/plain"},
                                  size)

    app = web.Application()
    app.router.add_get("/big", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    gc.freeze()  # as the daemon does: no collection of the test process's heap meanwhile
    try:
        longest = [await _longest_step_while_sent(port, size) for _ in range(3)]
    finally:
        gc.unfreeze()
        await runner.cleanup()
    # Slices of 2 ms. The best of three, as another process may take the CPU from this
    # one for a while in any single download; the old send held it in every one.
    assert min(longest) < 0.010, longest

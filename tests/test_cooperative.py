"""cooperative.run: work over every site done on the loop a slice at a time, runners taking
turns so that the engine waits for one slice per turn of the loop, however many run."""

from __future__ import annotations

import asyncio
import time

from bridgemon.cooperative import BUDGET, Steps, drain, run


def busy(name: str, slices: int, log: list[tuple[str, int]], turns: list[int]) -> Steps[str]:
    """Steps of about half a budget each, noting the loop's turn each one ran in."""
    for _ in range(2 * slices):
        end = time.perf_counter() + BUDGET / 2
        while time.perf_counter() < end:
            pass
        log.append((name, turns[0]))
        yield
    return name


async def test_runners_take_turns_one_slice_per_turn_of_the_loop() -> None:
    turns = [0]
    loop = asyncio.get_running_loop()
    counting = True

    def count() -> None:  # runs once per turn of the loop
        turns[0] += 1
        if counting:
            loop.call_soon(count)

    loop.call_soon(count)
    log: list[tuple[str, int]] = []
    results = await asyncio.gather(*(run(busy(name, 5, log, turns)) for name in "abc"))
    counting = False
    assert results == ["a", "b", "c"]
    by_turn: dict[int, set[str]] = {}
    for name, turn in log:
        by_turn.setdefault(turn, set()).add(name)
    assert all(len(names) == 1 for names in by_turn.values()), by_turn
    # ...and they alternate rather than one finishing before the others start.
    first = [name for name, _ in log][:9]
    assert set(first) == {"a", "b", "c"}


async def test_a_slice_ends_once_the_budget_is_spent_and_errors_pass_through() -> None:
    log: list[tuple[str, int]] = []
    turns = [0]
    assert await run(busy("x", 3, log, turns)) == "x"
    assert len(log) == 6

    def failing() -> Steps[None]:
        yield
        raise ValueError("bad input")

    try:
        await run(failing())
    except ValueError as exc:
        assert str(exc) == "bad input"
    else:
        raise AssertionError("the error was swallowed")
    assert await run(busy("y", 1, log, turns)) == "y"  # the turn was given back
    assert drain(busy("z", 1, log, turns)) == "z"


async def test_urgent_runners_go_first_and_a_cancelled_runner_hands_the_turn_on() -> None:
    turns = [0]
    log: list[tuple[str, int]] = []
    page = asyncio.ensure_future(run(busy("page", 10, log, turns)))
    await asyncio.sleep(0)  # the page has its turn
    other = asyncio.ensure_future(run(busy("other", 3, log, turns)))
    doomed = asyncio.ensure_future(run(busy("doomed", 3, log, turns), urgent=True))
    scrape = asyncio.ensure_future(run(busy("scrape", 3, log, turns), urgent=True))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await scrape == "scrape" and await other == "other" and await page == "page"
    names = [name for name, _ in log]
    assert "doomed" not in names
    # The scrape, queued last, runs all its slices before the page's second one is done
    # with and before the other normal runner starts.
    assert names.index("other") > max(i for i, name in enumerate(names) if name == "scrape")


async def test_what_a_slice_built_leaves_the_young_generation() -> None:
    """A scrape keeps hundreds of lists of 500 lines until the next one: were they young,
    every young collection would walk them (5-13 ms a time at 12,000 sites)."""
    import gc

    built: list[list[bytes]] = []

    def build() -> Steps[int]:
        for _ in range(4):
            built.append([b"line %d" % i for i in range(500)])
            yield
        return len(built)

    gc.unfreeze()
    try:
        assert await run(build()) == 4
        collectable = {id(obj) for generation in (0, 1, 2)
                       for obj in gc.get_objects(generation=generation)}
        assert not any(id(piece) in collectable for piece in built)  # frozen, all of them
    finally:
        gc.unfreeze()

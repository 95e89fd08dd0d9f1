"""Lifecycle.wait_for without processes: the waiter is in place when it returns, and dockerd's conditions."""

from __future__ import annotations

import asyncio

import pytest

from refengine.engine.containers.lifecycle import Lifecycle
from refengine.engine.containers.record import Container
from refengine.engine.containers.store import ContainerStore
from refengine.engine.errors import InvalidParameter


def _setup(tmp_path) -> tuple[Lifecycle, Container]:
    store = ContainerStore(str(tmp_path))
    life = Lifecycle(None, store, lambda name: "", lambda action, c, extra: None)  # type: ignore[arg-type]
    c = Container(id="c" * 64, name="/w", created="", image_id="", path="true", args=[], config={}, host_config={})
    return life, c


def _exit(life: Lifecycle, c: Container, code: int) -> None:
    """What the exit path does for waiters: the record's code, then the run's exit event."""
    c.state.exit_code, c.state.status, c.state.running = code, "exited", False
    life.exits[c.id].set()


async def _settles(fut: asyncio.Future) -> bool:
    for _ in range(5):
        await asyncio.sleep(0)
    return fut.done()


def test_next_exit_registered_before_it_is_awaited(tmp_path) -> None:
    async def main() -> None:
        life, c = _setup(tmp_path)
        waiter = life.wait_for(c, "next-exit")  # created container: waits for the coming exit
        _exit(life, c, 5)  # the exit happens before anyone awaits the waiter
        assert await asyncio.wait_for(waiter, 5) == 5
    asyncio.run(main())


def test_next_exit_of_an_exited_container_waits_for_the_next_one(tmp_path) -> None:
    async def main() -> None:
        life, c = _setup(tmp_path)
        life.exits[c.id] = asyncio.Event()
        _exit(life, c, 1)
        fut = asyncio.ensure_future(life.wait_for(c, "next-exit"))
        assert not await _settles(fut), "next-exit returned for an exit that had already happened"
        c.state.running = True
        _exit(life, c, 7)
        assert await asyncio.wait_for(fut, 5) == 7
    asyncio.run(main())


def test_not_running_answers_at_once_and_removal_ends_waits(tmp_path) -> None:
    async def main() -> None:
        life, c = _setup(tmp_path)
        c.state.exit_code = 3
        assert await asyncio.wait_for(life.wait_for(c, "not-running"), 5) == 3
        nxt = asyncio.ensure_future(life.wait_for(c, "next-exit"))
        gone = asyncio.ensure_future(life.wait_for(c, "removed"))
        assert not await _settles(gone), "removed returned before the removal"
        life.removed[c.id].set()
        assert await asyncio.wait_for(asyncio.gather(nxt, gone), 5) == [3, 3]
    asyncio.run(main())


def test_unknown_condition_is_refused(tmp_path) -> None:
    life, c = _setup(tmp_path)
    with pytest.raises(InvalidParameter):
        life.wait_for(c, "sometime")

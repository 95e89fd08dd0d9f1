"""A stop that meets a restart policy's start in flight: it waits for that start and stops what it
made, and the policy's start does not clear the stop (the race test_restart_always_and_stop caught
1 in 5 runs under load; here the interleaving is forced)."""

from __future__ import annotations

import asyncio
import signal
from types import SimpleNamespace

from refengine.engine.containers.lifecycle import Lifecycle
from refengine.engine.containers.record import Container
from refengine.engine.containers.store import ContainerStore


class FakeRun:
    """What stop() touches of a running container: signals end it at once."""

    def __init__(self) -> None:
        self.exited = asyncio.Event()
        self.signals: list[int] = []
        self.lc = SimpleNamespace(signal=self.signal)

    def signal(self, sig: int, all_processes: bool = False) -> None:
        self.signals.append(sig)
        self.exited.set()


def test_stop_waits_for_the_policy_start_and_stops_what_it_made(tmp_path) -> None:
    async def main() -> None:
        store = ContainerStore(str(tmp_path))
        events: list[str] = []
        life = Lifecycle(None, store, lambda name: "", lambda action, c, extra: events.append(action))  # type: ignore[arg-type]
        c = Container(id="c" * 64, name="/race", created="", image_id="", path="sleep", args=["1"], config={},
                      host_config={"RestartPolicy": {"Name": "always"}})
        gate, run = asyncio.Event(), FakeRun()

        async def slow_start(container: Container) -> None:  # the policy's start, held at the gate
            await gate.wait()
            life.running[container.id] = run  # type: ignore[assignment]
            container.state.running = True

        life._start = slow_start  # type: ignore[method-assign]
        starting = asyncio.ensure_future(life.start(c, by_policy=True))
        await asyncio.sleep(0)
        assert c.id in life.starting
        stopping = asyncio.ensure_future(life.stop(c, 5))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not stopping.done(), "the stop answered before the start in flight had made anything"
        gate.set()
        await asyncio.wait_for(asyncio.gather(starting, stopping), 5)  # NotModified would raise here
        assert run.signals == [signal.SIGTERM], f"the stop sent {run.signals} to what the start made"
        assert c.manually_stopped, "the policy's start cleared the explicit stop: the container would come back"
        assert events[-1] == "stop", events
    asyncio.run(main())

"""Event loops for tests: the one coroutine runner, on asyncio's own loop or
on uvloop (the daemon's production loop), so every session test covers
both."""

import asyncio
import importlib.util

# Loop names, the ids of the plugin's ``loop_name`` fan-out.
LOOPS = ("asyncio", "uvloop")
DEFAULT_TIMEOUT = 60.0  # a hang guard, not a performance bound


def available(name):
    """Whether the loop called ``name`` can run here (uvloop is optional)."""
    if name not in LOOPS:
        raise ValueError("unknown event loop %r" % (name,))
    return name == "asyncio" or importlib.util.find_spec(name) is not None


def factory(name):
    """The ``loop_factory`` for :class:`asyncio.Runner`: None (asyncio's
    default, exactly what ``asyncio.run`` does) or ``uvloop.new_event_loop``."""
    if not available(name):
        raise ImportError("event loop %r is not installed" % (name,))
    if name == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def run(coro, timeout=DEFAULT_TIMEOUT, loop_factory=None):
    """Run ``coro`` to completion on a fresh loop made by ``loop_factory``
    (asyncio's default when None); a hung test fails after ``timeout`` s
    instead of hanging the suite."""

    async def main():
        return await asyncio.wait_for(coro, timeout)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())

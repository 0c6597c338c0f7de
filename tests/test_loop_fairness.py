"""Loop fairness: many sessions receiving at once share one receive budget
per event-loop turn (issues 12 and 13: "every session's keepalives on
time").

Each connection's work per turn was bounded (READ_BUDGET_*), but nothing
bounded the sum over the connections ready in the same turn: 150 sessions'
first table bytes held the daemon's loop for ~10 s, past the 3 s KEEPALIVE
interval (RFC 4271 §4.4, §10).  Here 30 library receivers on one loop get
bursts from one sender; a probe callback re-queued with ``call_soon`` runs
once per loop turn and counts, between two of its runs, the UPDATEs and
prefixes all receivers processed.  With the loop-wide budget that is at most
two budget windows (a probe window straddles one reset); without it, up to
30 x 256 messages.  No wall-clock bar: the bounds are in messages and
prefixes and follow from the budget constants.
"""

import asyncio

import pytest

from fastbgp.session.fsm import State
from fastbgp.session.protocol import (
    MIN_SLICE_BYTES,
    READ_BUDGET_MESSAGES,
    TURN_BUDGET_BYTES,
    TURN_BUDGET_MESSAGES,
    TurnScheduler,
)
from fastbgp.session.speaker import NeighborConfig, Speaker
from fastbgp.wire.constants import MAX_MESSAGE_LEN

SESSIONS = 30
SMALL = 2_000  # prefixes each in its own UPDATE (its own MED): the message budget binds
BULK = 20_000  # prefixes packed in full-size UPDATEs: the octet budget binds
HOLD = 9
# Fewest NLRI octets per prefix here (/24: one length octet + three).
OCTETS_PER_PREFIX = 4


def prefixes(first, n):
    return ["%d.%d.%d.0/24" % (first + (i >> 16), (i >> 8) & 255, i & 255) for i in range(n)]


class TurnProbe:
    """Runs once per loop turn (re-queued with call_soon) and keeps the
    largest per-turn increase of the receivers' UPDATE and prefix counts."""

    def __init__(self, loop, neighbors):
        self.loop = loop
        self.neighbors = neighbors
        self.last = self.totals()
        self.turns = 0
        self.max_updates = 0
        self.max_prefixes = 0
        self.stopped = False
        loop.call_soon(self.tick)

    def totals(self):
        return (sum(n.counters.received.update for n in self.neighbors),
                sum(n.received_count for n in self.neighbors))

    def tick(self):
        if self.stopped:
            return
        now = self.totals()
        self.turns += 1
        self.max_updates = max(self.max_updates, now[0] - self.last[0])
        self.max_prefixes = max(self.max_prefixes, now[1] - self.last[1])
        self.last = now
        self.loop.call_soon(self.tick)


async def scenario():
    loop = asyncio.get_running_loop()
    sender = Speaker(64512, "10.255.0.1")
    for i in range(SMALL):
        sender.announce(prefixes(11, SMALL)[i:i + 1], "127.0.0.1", as_path=[64600], med=i)
    sender.announce(prefixes(21, BULK), "127.0.0.1", as_path=[64600, 64601])
    receivers = []
    probe = None
    try:
        for i in range(SESSIONS):
            addr = "127.0.2.%d" % (i + 1)
            r = Speaker(65000 + i, "10.0.2.%d" % (i + 1), listen=[(addr, 0)])
            await r.start()
            n = r.add_neighbor(NeighborConfig(address="127.0.0.1", peer_as=64512, passive=True, hold_time=HOLD))
            receivers.append((r, n))
            sender.add_neighbor(NeighborConfig(address=addr, peer_as=65000 + i, port=r.port, local_address="127.0.0.1",
                                               hold_time=HOLD, idle_hold_time=0.5))
        nbs = [n for _r, n in receivers]
        sched = TurnScheduler.for_loop(loop)
        assert all(r.scheduler is sched for r, _n in receivers)
        base_deferred = sched.deferred
        sched.max_turn_bytes = sched.max_turn_messages = 0
        probe = TurnProbe(loop, nbs)
        await sender.start()
        await asyncio.gather(*(n.wait_established(15) for n in nbs))
        await asyncio.gather(*(n.wait_end_of_rib(timeout=60) for n in nbs))
        probe.stopped = True
        for n in nbs:
            assert n.state is State.ESTABLISHED
            assert n.received_count == SMALL + BULK
            assert n.counters.flaps == 0
        return probe, sched, base_deferred
    finally:
        if probe is not None:
            probe.stopped = True
        await sender.stop()
        for r, _n in receivers:
            await r.stop(timeout=0.2)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_many_sessions_share_one_budget_per_turn(loop_name, run):
    probe, sched, base_deferred = run(scenario(), timeout=120)
    print("\n%s: %d probe turns, at most %d UPDATEs / %d prefixes in one turn; scheduler: %d windows, "
          "max %d messages / %d octets, %d deferrals, longest wait %d turns"
          % (loop_name, probe.turns, probe.max_updates, probe.max_prefixes, sched.turns,
             sched.max_turn_messages, sched.max_turn_bytes, sched.deferred - base_deferred, sched.max_wait_turns))
    # The burst was bigger than one turn's budget, so the budget did bite.
    assert sched.deferred > base_deferred
    assert probe.max_updates > READ_BUDGET_MESSAGES // 2
    # The scheduler's own accounting: between two budget resets, at most
    # the budget (octets: plus the one message that crossed the mark).
    assert sched.max_turn_messages <= TURN_BUDGET_MESSAGES
    assert sched.max_turn_bytes < TURN_BUDGET_BYTES + MAX_MESSAGE_LEN
    # Independent of the scheduler: what ran between two consecutive loop
    # turns (a probe window straddles at most one reset: two windows).
    assert probe.max_updates <= 2 * TURN_BUDGET_MESSAGES
    assert probe.max_prefixes <= 2 * (TURN_BUDGET_BYTES + MAX_MESSAGE_LEN) // OCTETS_PER_PREFIX
    # Every waiting connection gets a share of each turn (at least one
    # message's worth, plus the message that crosses it), so none waits
    # more than the turns needed to serve all of them once: its hold timer
    # and KEEPALIVE processing never fall N x 64 KiB behind.
    per_turn = TURN_BUDGET_BYTES // (MIN_SLICE_BYTES + MAX_MESSAGE_LEN)
    assert sched.max_wait_turns <= 1 + -(-SESSIONS // per_turn)


def test_scheduler_serves_waiting_connections_round_robin(run):
    """Unit: with the budget spent, offered connections wait in order and
    each is served once per turn; the budget is reset each turn."""

    class Conn:
        def __init__(self, name, rounds):
            self.name, self.rounds, self.queued, self.queued_turn = name, rounds, False, 0

        def process(self, max_bytes, max_messages):
            served.append(self.name)
            self.rounds -= 1
            return max_bytes, max_messages, self.rounds > 0

    served = []

    async def go():
        loop = asyncio.get_running_loop()
        sched = TurnScheduler(loop, budget_bytes=100, budget_messages=10)
        a, b, c = Conn("a", 2), Conn("b", 1), Conn("c", 1)
        sched.offer(a)  # served at once, spends the turn's budget, queued for more
        sched.offer(b)  # budget spent: waits
        sched.offer(c)
        assert served == ["a"] and [x.name for x in sched.ready] == ["a", "b", "c"]
        assert all(x.queued for x in (a, b, c))
        for _ in range(6):
            await asyncio.sleep(0)
        return sched

    sched = run(go(), timeout=5)
    # One connection per turn (each takes the whole budget), in order.
    assert served == ["a", "a", "b", "c"]
    assert not sched.ready and sched.max_turn_messages == 10 and sched.max_turn_bytes == 100
    # c was queued in turn 0 and served in the 3rd turn.
    assert sched.max_wait_turns == 3

"""Unit tests for the pure RFC 4271 §8 FSM in fastbgp.session.fsm."""

import random

import pytest

from fastbgp.wire.errors import (
    ACTION_SESSION_RESET,
    ACTION_TREAT_AS_WITHDRAW,
    BGPError,
)
from fastbgp.session.fsm import (
    FSM,
    Act,
    Action,
    Collision,
    Event,
    Reason,
    State,
    Transition,
    error_event,
    jitter,
    keepalive_interval,
    negotiate_hold_time,
    notification_event,
    resolve_collision,
)

S = State
E = Event
A = Action

# Events that take a session from Idle to each state (hold time 90 both sides).
PATH = {
    S.IDLE: [],
    S.CONNECT: [(E.MANUAL_START, {})],
    S.ACTIVE: [(E.MANUAL_START_PASSIVE, {})],
    S.OPENSENT: [(E.MANUAL_START, {}), (E.TCP_CR_ACKED, {})],
    S.OPENCONFIRM: [(E.MANUAL_START, {}), (E.TCP_CR_ACKED, {}), (E.BGP_OPEN, {"hold_time": 90})],
    S.ESTABLISHED: [
        (E.MANUAL_START, {}),
        (E.TCP_CR_ACKED, {}),
        (E.BGP_OPEN, {"hold_time": 90}),
        (E.KEEPALIVE_MSG, {}),
    ],
}


def fsm_in(state, now=0.0, **config):
    fsm = FSM(**config)
    for event, args in PATH[state]:
        fsm.handle(event, now=now, **args)
    assert fsm.state is state
    return fsm


def fsm_delay_open(state):
    """An FSM with DelayOpen whose connection is up and DelayOpenTimer runs."""
    fsm = FSM(delay_open_time=5)
    fsm.handle(E.MANUAL_START_PASSIVE if state is S.ACTIVE else E.MANUAL_START, now=0)
    t = fsm.handle(E.TCP_CONNECTION_CONFIRMED, now=0)
    assert t.state is state and t.has(A.START_DELAY_OPEN_TIMER)
    assert fsm.delay_open_running
    return fsm


CEASE_ADMIN = (6, 2, b"")
HOLD_EXPIRED = (4, 0, b"")
COLLISION = (6, 7, b"")

# (state, event, args) -> (new state, actions that must appear, NOTIFICATION or None)
TABLE = [
    # RFC 4271 §8.2.2 Idle
    (S.IDLE, E.MANUAL_START, {}, S.CONNECT, [A.START_CONNECT_RETRY_TIMER, A.INITIATE_TCP], None),
    (S.IDLE, E.AUTOMATIC_START, {}, S.CONNECT, [A.START_CONNECT_RETRY_TIMER, A.INITIATE_TCP], None),
    (S.IDLE, E.MANUAL_START_PASSIVE, {}, S.ACTIVE, [A.START_CONNECT_RETRY_TIMER], None),
    (S.IDLE, E.AUTOMATIC_START_PASSIVE, {}, S.ACTIVE, [A.START_CONNECT_RETRY_TIMER], None),
    (S.IDLE, E.AUTOMATIC_START_DAMP, {}, S.CONNECT, [A.INITIATE_TCP], None),
    (S.IDLE, E.AUTOMATIC_START_DAMP_PASSIVE, {}, S.ACTIVE, [], None),
    (S.IDLE, E.IDLE_HOLD_TIMER_EXPIRES, {}, S.CONNECT, [A.INITIATE_TCP], None),
    (S.IDLE, E.MANUAL_STOP, {}, S.IDLE, [], None),
    (S.IDLE, E.AUTOMATIC_STOP, {}, S.IDLE, [], None),
    (S.IDLE, E.BGP_OPEN, {}, S.IDLE, [], None),
    (S.IDLE, E.TCP_CONNECTION_CONFIRMED, {}, S.IDLE, [], None),
    (S.IDLE, E.HOLD_TIMER_EXPIRES, {}, S.IDLE, [], None),
    (S.IDLE, E.UPDATE_MSG, {}, S.IDLE, [], None),
    # Connect
    (S.CONNECT, E.MANUAL_START, {}, S.CONNECT, [], None),
    (S.CONNECT, E.MANUAL_STOP, {}, S.IDLE, [A.DROP_TCP, A.RELEASE_RESOURCES, A.STOP_CONNECT_RETRY_TIMER], None),
    (
        S.CONNECT,
        E.CONNECT_RETRY_TIMER_EXPIRES,
        {},
        S.CONNECT,
        [A.DROP_TCP, A.START_CONNECT_RETRY_TIMER, A.INITIATE_TCP],
        None,
    ),
    (S.CONNECT, E.TCP_CR_ACKED, {}, S.OPENSENT, [A.STOP_CONNECT_RETRY_TIMER, A.SEND_OPEN, A.START_HOLD_TIMER], None),
    (S.CONNECT, E.TCP_CONNECTION_CONFIRMED, {}, S.OPENSENT, [A.SEND_OPEN, A.START_HOLD_TIMER], None),
    (S.CONNECT, E.TCP_CONNECTION_FAILS, {}, S.IDLE, [A.STOP_CONNECT_RETRY_TIMER, A.DROP_TCP, A.RELEASE_RESOURCES], None),
    (S.CONNECT, E.BGP_HEADER_ERR, {}, S.IDLE, [A.INCREMENT_CONNECT_RETRY_COUNTER], (1, 0, b"")),
    (S.CONNECT, E.BGP_OPEN_MSG_ERR, {"error": BGPError(2, 2)}, S.IDLE, [A.DROP_TCP], (2, 2, b"")),
    (S.CONNECT, E.NOTIF_MSG_VER_ERR, {}, S.IDLE, [A.INCREMENT_CONNECT_RETRY_COUNTER], None),
    (S.CONNECT, E.BGP_OPEN, {}, S.IDLE, [A.DROP_TCP, A.INCREMENT_CONNECT_RETRY_COUNTER], None),
    (S.CONNECT, E.HOLD_TIMER_EXPIRES, {}, S.IDLE, [A.DROP_TCP], None),
    (S.CONNECT, E.KEEPALIVE_MSG, {}, S.IDLE, [A.DROP_TCP], None),
    (S.CONNECT, E.AUTOMATIC_STOP, {}, S.IDLE, [A.DROP_TCP, A.INCREMENT_CONNECT_RETRY_COUNTER], None),
    # Active
    (S.ACTIVE, E.AUTOMATIC_START, {}, S.ACTIVE, [], None),
    (S.ACTIVE, E.MANUAL_STOP, {}, S.IDLE, [A.RELEASE_RESOURCES, A.DROP_TCP, A.STOP_CONNECT_RETRY_TIMER], None),
    (S.ACTIVE, E.CONNECT_RETRY_TIMER_EXPIRES, {}, S.CONNECT, [A.START_CONNECT_RETRY_TIMER, A.INITIATE_TCP], None),
    (S.ACTIVE, E.TCP_CONNECTION_CONFIRMED, {}, S.OPENSENT, [A.STOP_CONNECT_RETRY_TIMER, A.SEND_OPEN], None),
    (S.ACTIVE, E.TCP_CR_ACKED, {}, S.OPENSENT, [A.SEND_OPEN, A.START_HOLD_TIMER], None),
    (S.ACTIVE, E.TCP_CONNECTION_FAILS, {}, S.IDLE, [A.RELEASE_RESOURCES, A.INCREMENT_CONNECT_RETRY_COUNTER], None),
    (S.ACTIVE, E.BGP_HEADER_ERR, {"error": BGPError(1, 2)}, S.IDLE, [A.DROP_TCP], (1, 2, b"")),
    (S.ACTIVE, E.NOTIF_MSG_VER_ERR, {}, S.IDLE, [A.INCREMENT_CONNECT_RETRY_COUNTER], None),
    (S.ACTIVE, E.UPDATE_MSG, {}, S.IDLE, [A.DROP_TCP, A.INCREMENT_CONNECT_RETRY_COUNTER], None),
    (S.ACTIVE, E.DELAY_OPEN_TIMER_EXPIRES, {}, S.OPENSENT, [A.SEND_OPEN, A.START_HOLD_TIMER], None),
    # OpenSent
    (S.OPENSENT, E.MANUAL_START, {}, S.OPENSENT, [], None),
    (S.OPENSENT, E.MANUAL_STOP, {}, S.IDLE, [A.RELEASE_RESOURCES, A.DROP_TCP], CEASE_ADMIN),
    (S.OPENSENT, E.AUTOMATIC_STOP, {}, S.IDLE, [A.INCREMENT_CONNECT_RETRY_COUNTER], (6, 1, b"")),
    (S.OPENSENT, E.HOLD_TIMER_EXPIRES, {}, S.IDLE, [A.DROP_TCP, A.INCREMENT_CONNECT_RETRY_COUNTER], HOLD_EXPIRED),
    (S.OPENSENT, E.TCP_CONNECTION_CONFIRMED, {}, S.OPENSENT, [], None),
    (S.OPENSENT, E.TCP_CR_ACKED, {}, S.OPENSENT, [], None),
    (S.OPENSENT, E.TCP_CONNECTION_FAILS, {}, S.ACTIVE, [A.DROP_TCP, A.START_CONNECT_RETRY_TIMER], None),
    (
        S.OPENSENT,
        E.BGP_OPEN,
        {"hold_time": 90},
        S.OPENCONFIRM,
        [A.STOP_CONNECT_RETRY_TIMER, A.SEND_KEEPALIVE, A.START_KEEPALIVE_TIMER, A.START_HOLD_TIMER],
        None,
    ),
    (S.OPENSENT, E.BGP_OPEN, {"hold_time": 2}, S.IDLE, [A.DROP_TCP], (2, 6, b"")),
    (S.OPENSENT, E.BGP_HEADER_ERR, {"error": BGPError(1, 1)}, S.IDLE, [A.DROP_TCP], (1, 1, b"")),
    (S.OPENSENT, E.BGP_OPEN_MSG_ERR, {"error": BGPError(2, 3)}, S.IDLE, [A.DROP_TCP], (2, 3, b"")),
    (S.OPENSENT, E.BGP_OPEN_MSG_ERR, {}, S.IDLE, [A.DROP_TCP], (2, 0, b"")),
    (S.OPENSENT, E.OPEN_COLLISION_DUMP, {}, S.IDLE, [A.DROP_TCP, A.INCREMENT_CONNECT_RETRY_COUNTER], COLLISION),
    (S.OPENSENT, E.NOTIF_MSG_VER_ERR, {}, S.IDLE, [A.DROP_TCP, A.RELEASE_RESOURCES], None),
    (S.OPENSENT, E.NOTIF_MSG, {}, S.IDLE, [A.DROP_TCP, A.INCREMENT_CONNECT_RETRY_COUNTER], None),
    (S.OPENSENT, E.KEEPALIVE_MSG, {}, S.IDLE, [A.DROP_TCP, A.INCREMENT_CONNECT_RETRY_COUNTER], (5, 1, b"")),
    (S.OPENSENT, E.UPDATE_MSG, {}, S.IDLE, [A.DROP_TCP], (5, 1, b"")),
    (S.OPENSENT, E.ROUTE_REFRESH_MSG, {}, S.IDLE, [A.DROP_TCP], (5, 1, b"")),
    (S.OPENSENT, E.CONNECT_RETRY_TIMER_EXPIRES, {}, S.IDLE, [A.DROP_TCP], (5, 1, b"")),
    (S.OPENSENT, E.KEEPALIVE_TIMER_EXPIRES, {}, S.IDLE, [A.DROP_TCP], (5, 1, b"")),
    (S.OPENSENT, E.BGP_OPEN_WITH_DELAY_OPEN_TIMER_RUNNING, {}, S.IDLE, [A.DROP_TCP], (5, 1, b"")),
    (S.OPENSENT, E.UPDATE_MSG_ERR, {}, S.IDLE, [A.DROP_TCP], (5, 1, b"")),
    # OpenConfirm
    (S.OPENCONFIRM, E.AUTOMATIC_START, {}, S.OPENCONFIRM, [], None),
    (S.OPENCONFIRM, E.MANUAL_STOP, {}, S.IDLE, [A.RELEASE_RESOURCES, A.DROP_TCP], CEASE_ADMIN),
    (S.OPENCONFIRM, E.AUTOMATIC_STOP, {"reason": Reason.DECONFIGURED}, S.IDLE, [A.DROP_TCP], (6, 3, b"")),
    (S.OPENCONFIRM, E.HOLD_TIMER_EXPIRES, {}, S.IDLE, [A.DROP_TCP], HOLD_EXPIRED),
    (S.OPENCONFIRM, E.KEEPALIVE_TIMER_EXPIRES, {}, S.OPENCONFIRM, [A.SEND_KEEPALIVE, A.START_KEEPALIVE_TIMER], None),
    (S.OPENCONFIRM, E.TCP_CONNECTION_CONFIRMED, {}, S.OPENCONFIRM, [], None),
    (S.OPENCONFIRM, E.TCP_CONNECTION_FAILS, {}, S.IDLE, [A.DROP_TCP, A.INCREMENT_CONNECT_RETRY_COUNTER], None),
    (S.OPENCONFIRM, E.NOTIF_MSG, {}, S.IDLE, [A.DROP_TCP, A.INCREMENT_CONNECT_RETRY_COUNTER], None),
    (S.OPENCONFIRM, E.NOTIF_MSG_VER_ERR, {}, S.IDLE, [A.INCREMENT_CONNECT_RETRY_COUNTER], None),
    (S.OPENCONFIRM, E.BGP_HEADER_ERR, {"error": BGPError(1, 3, b"\x09")}, S.IDLE, [A.DROP_TCP], (1, 3, b"\x09")),
    (S.OPENCONFIRM, E.OPEN_COLLISION_DUMP, {}, S.IDLE, [A.DROP_TCP], COLLISION),
    (S.OPENCONFIRM, E.KEEPALIVE_MSG, {}, S.ESTABLISHED, [A.RESTART_HOLD_TIMER], None),
    (S.OPENCONFIRM, E.BGP_OPEN, {"hold_time": 90}, S.IDLE, [A.DROP_TCP], (5, 2, b"")),
    (S.OPENCONFIRM, E.UPDATE_MSG, {}, S.IDLE, [A.DROP_TCP], (5, 2, b"")),
    (S.OPENCONFIRM, E.ROUTE_REFRESH_MSG, {}, S.IDLE, [A.DROP_TCP], (5, 2, b"")),
    (S.OPENCONFIRM, E.CONNECT_RETRY_TIMER_EXPIRES, {}, S.IDLE, [A.DROP_TCP], (5, 2, b"")),
    (S.OPENCONFIRM, E.DELAY_OPEN_TIMER_EXPIRES, {}, S.IDLE, [A.DROP_TCP], (5, 2, b"")),
    (S.OPENCONFIRM, E.UPDATE_MSG_ERR, {}, S.IDLE, [A.DROP_TCP], (5, 2, b"")),
    # Established
    (S.ESTABLISHED, E.MANUAL_START, {}, S.ESTABLISHED, [], None),
    (S.ESTABLISHED, E.MANUAL_STOP, {}, S.IDLE, [A.CLEAR_ROUTES, A.RELEASE_RESOURCES, A.DROP_TCP], CEASE_ADMIN),
    (
        S.ESTABLISHED,
        E.MANUAL_STOP,
        {"reason": Reason.HARD_RESET, "data": b"bye"},
        S.IDLE,
        [A.CLEAR_ROUTES],
        (6, 9, b"bye"),
    ),
    (S.ESTABLISHED, E.MANUAL_STOP, {"subcode": 4}, S.IDLE, [A.CLEAR_ROUTES], (6, 4, b"")),
    (S.ESTABLISHED, E.AUTOMATIC_STOP, {}, S.IDLE, [A.CLEAR_ROUTES, A.INCREMENT_CONNECT_RETRY_COUNTER], (6, 1, b"")),
    (S.ESTABLISHED, E.HOLD_TIMER_EXPIRES, {}, S.IDLE, [A.CLEAR_ROUTES, A.DROP_TCP], HOLD_EXPIRED),
    (S.ESTABLISHED, E.KEEPALIVE_TIMER_EXPIRES, {}, S.ESTABLISHED, [A.SEND_KEEPALIVE, A.START_KEEPALIVE_TIMER], None),
    (S.ESTABLISHED, E.TCP_CONNECTION_CONFIRMED, {}, S.ESTABLISHED, [], None),
    (S.ESTABLISHED, E.TCP_CR_ACKED, {}, S.ESTABLISHED, [], None),
    (S.ESTABLISHED, E.OPEN_COLLISION_DUMP, {}, S.IDLE, [A.CLEAR_ROUTES, A.DROP_TCP], COLLISION),
    (S.ESTABLISHED, E.TCP_CONNECTION_FAILS, {}, S.IDLE, [A.CLEAR_ROUTES, A.INCREMENT_CONNECT_RETRY_COUNTER], None),
    (S.ESTABLISHED, E.NOTIF_MSG, {}, S.IDLE, [A.CLEAR_ROUTES, A.DROP_TCP], None),
    (S.ESTABLISHED, E.NOTIF_MSG_VER_ERR, {}, S.IDLE, [A.CLEAR_ROUTES, A.DROP_TCP], None),
    (S.ESTABLISHED, E.KEEPALIVE_MSG, {}, S.ESTABLISHED, [A.RESTART_HOLD_TIMER], None),
    (S.ESTABLISHED, E.UPDATE_MSG, {}, S.ESTABLISHED, [A.RESTART_HOLD_TIMER, A.PROCESS_UPDATE], None),
    (S.ESTABLISHED, E.ROUTE_REFRESH_MSG, {}, S.ESTABLISHED, [A.RESTART_HOLD_TIMER, A.PROCESS_ROUTE_REFRESH], None),
    (S.ESTABLISHED, E.UPDATE_MSG_ERR, {"error": BGPError(3, 11)}, S.IDLE, [A.CLEAR_ROUTES, A.DROP_TCP], (3, 11, b"")),
    (S.ESTABLISHED, E.UPDATE_MSG_ERR, {}, S.IDLE, [A.CLEAR_ROUTES], (3, 0, b"")),
    (
        S.ESTABLISHED,
        E.UPDATE_MSG_ERR,
        {"error": BGPError(3, 6, action=ACTION_TREAT_AS_WITHDRAW)},
        S.ESTABLISHED,
        [A.RESTART_HOLD_TIMER, A.PROCESS_UPDATE],
        None,
    ),
    (S.ESTABLISHED, E.BGP_HEADER_ERR, {"error": BGPError(1, 2)}, S.IDLE, [A.CLEAR_ROUTES], (1, 2, b"")),
    (S.ESTABLISHED, E.BGP_OPEN, {"hold_time": 90}, S.IDLE, [A.CLEAR_ROUTES, A.DROP_TCP], (5, 3, b"")),
    (S.ESTABLISHED, E.BGP_OPEN_MSG_ERR, {}, S.IDLE, [A.CLEAR_ROUTES], (5, 3, b"")),
    (S.ESTABLISHED, E.CONNECT_RETRY_TIMER_EXPIRES, {}, S.IDLE, [A.CLEAR_ROUTES], (5, 3, b"")),
    (S.ESTABLISHED, E.DELAY_OPEN_TIMER_EXPIRES, {}, S.IDLE, [A.CLEAR_ROUTES], (5, 3, b"")),
    (S.ESTABLISHED, E.IDLE_HOLD_TIMER_EXPIRES, {}, S.IDLE, [A.CLEAR_ROUTES], (5, 3, b"")),
]


def _id(row):
    return "%s-%s-%s" % (row[0].name, row[1].name, "-".join(sorted(str(k) for k in row[2])))


@pytest.mark.parametrize("state,event,args,expected,acts,notification", TABLE, ids=[_id(r) for r in TABLE])
def test_transition_table(state, event, args, expected, acts, notification):
    fsm = fsm_in(state)
    t = fsm.handle(event, now=10.0, **args)
    assert isinstance(t, Transition)
    assert t.old_state is state
    assert t.state is expected
    assert fsm.state is expected
    for kind in acts:
        assert t.has(kind), "%s missing from %r" % (kind.name, t.actions)
    assert t.notification == notification
    # At most one NOTIFICATION, and it is always sent before the drop.
    kinds = t.kinds
    assert kinds.count(A.SEND_NOTIFICATION) <= 1
    if A.SEND_NOTIFICATION in kinds and A.DROP_TCP in kinds:
        assert kinds.index(A.SEND_NOTIFICATION) < kinds.index(A.DROP_TCP)
    # Only leaving Established deletes routes.
    assert t.has(A.CLEAR_ROUTES) == (state is S.ESTABLISHED and expected is S.IDLE)
    # Every drop to Idle stops the ConnectRetryTimer.
    if expected is S.IDLE and state is not S.IDLE:
        assert t.has(A.STOP_CONNECT_RETRY_TIMER)
        assert t.reason is not None
    if expected is state and not acts:
        assert t.actions == ()


def test_every_state_event_pair_is_handled():
    """No (state, event) combination raises, and unexpected events from
    OpenSent on always carry RFC 6608 subcodes."""
    for state in S:
        for event in E:
            fsm = fsm_in(state)
            t = fsm.handle(event, now=1.0)
            assert t.state in S
            n = t.notification
            if n is not None and n[0] == 5:
                assert n[1] == {S.OPENSENT: 1, S.OPENCONFIRM: 2, S.ESTABLISHED: 3}[state]


# -- specific rules ---------------------------------------------------------------


def test_hold_timer_in_opensent_is_large_value():
    t = fsm_in(S.CONNECT).handle(E.TCP_CR_ACKED, now=0)
    assert t.get(A.START_HOLD_TIMER).seconds == 240
    f = FSM(large_hold_time=180)
    f.handle(E.MANUAL_START, now=0)
    assert f.handle(E.TCP_CR_ACKED, now=0).get(A.START_HOLD_TIMER).seconds == 180


def test_negotiated_timers_in_openconfirm():
    f = fsm_in(S.OPENSENT)
    t = f.handle(E.BGP_OPEN, now=0, hold_time=30)
    assert t.state is S.OPENCONFIRM
    assert t.get(A.START_HOLD_TIMER).seconds == 30
    assert t.get(A.START_KEEPALIVE_TIMER).seconds == 10
    assert f.negotiated_hold_time == 30 and f.negotiated_keepalive_time == 10
    t = f.handle(E.KEEPALIVE_MSG, now=1)
    assert t.get(A.RESTART_HOLD_TIMER).seconds == 30
    t = f.handle(E.KEEPALIVE_TIMER_EXPIRES, now=11)
    assert t.kinds == (A.SEND_KEEPALIVE, A.START_KEEPALIVE_TIMER)
    assert t.get(A.START_KEEPALIVE_TIMER).seconds == 10


def test_configured_keepalive_is_used():
    f = fsm_in(S.OPENSENT, keepalive_time=7)
    t = f.handle(E.BGP_OPEN, now=0, hold_time=90)
    assert t.get(A.START_KEEPALIVE_TIMER).seconds == 7


def test_hold_time_zero_disables_timers():
    f = fsm_in(S.OPENSENT)
    t = f.handle(E.BGP_OPEN, now=0, hold_time=0)
    assert t.state is S.OPENCONFIRM
    assert not t.has(A.START_HOLD_TIMER) and not t.has(A.START_KEEPALIVE_TIMER)
    assert t.has(A.STOP_HOLD_TIMER) and t.has(A.STOP_KEEPALIVE_TIMER)
    assert t.has(A.SEND_KEEPALIVE)  # the KEEPALIVE answering OPEN is still sent
    t = f.handle(E.KEEPALIVE_MSG, now=1)
    assert t.state is S.ESTABLISHED and t.actions == ()
    assert f.handle(E.UPDATE_MSG, now=2).kinds == (A.PROCESS_UPDATE,)
    assert f.handle(E.KEEPALIVE_TIMER_EXPIRES, now=3).actions == ()


def test_bgp_open_without_hold_time_uses_local():
    f = fsm_in(S.OPENSENT, hold_time=45)
    f.handle(E.BGP_OPEN, now=0)
    assert f.negotiated_hold_time == 45


def test_opensent_tcp_fails_goes_active_and_stops_hold_timer():
    f = fsm_in(S.OPENSENT)
    t = f.handle(E.TCP_CONNECTION_FAILS, now=0)
    assert t.state is S.ACTIVE
    assert t.has(A.STOP_HOLD_TIMER)
    assert t.get(A.START_CONNECT_RETRY_TIMER).seconds == 120
    assert f.connect_retry_counter == 0


def test_reason_override():
    f = fsm_in(S.ESTABLISHED)
    t = f.handle(E.TCP_CONNECTION_FAILS, now=0, reason=Reason.WRITE_FAILED)
    assert t.reason is Reason.WRITE_FAILED


def test_reasons_follow_gobgp():
    f = FSM()
    seen = []
    for event, args in PATH[S.ESTABLISHED]:
        seen.append(f.handle(event, now=0, **args).reason)
    assert seen == [Reason.ADMIN_UP, Reason.TCP_ESTABLISHED, Reason.OPEN_MSG_RECEIVED, Reason.OPEN_MSG_NEGOTIATED]
    assert f.handle(E.HOLD_TIMER_EXPIRES, now=0).reason is Reason.HOLD_TIMER_EXPIRED
    assert f.handle(E.IDLE_HOLD_TIMER_EXPIRES, now=5).reason is Reason.IDLE_HOLD_TIMER_EXPIRED
    assert f.handle(E.TCP_CONNECTION_CONFIRMED, now=5).reason is Reason.NEW_CONNECTION
    assert f.handle(E.NOTIF_MSG, now=5).reason is Reason.NOTIFICATION_RECEIVED


def test_unknown_event_argument_rejected():
    with pytest.raises(TypeError):
        FSM().handle(E.MANUAL_START, now=0, hodl_time=3)


def test_event_accepts_int():
    assert FSM().handle(1, now=0).state is S.CONNECT


# -- passive / delay open -----------------------------------------------------------


def test_configured_passive_never_initiates():
    f = FSM(passive=True)
    t = f.handle(E.MANUAL_START, now=0)
    assert t.state is S.ACTIVE
    assert t.actions == ()
    t = f.handle(E.CONNECT_RETRY_TIMER_EXPIRES, now=1)
    assert t.state is S.ACTIVE and t.actions == ()
    t = f.handle(E.TCP_CONNECTION_CONFIRMED, now=2)
    assert t.state is S.OPENSENT
    t = f.handle(E.TCP_CONNECTION_FAILS, now=3)
    assert t.state is S.ACTIVE and not t.has(A.START_CONNECT_RETRY_TIMER)
    # Automatic restart after a drop also stays passive.
    f.handle(E.TCP_CONNECTION_FAILS, now=4)
    assert f.state is S.IDLE
    t = f.handle(E.IDLE_HOLD_TIMER_EXPIRES, now=10)
    assert t.state is S.ACTIVE and not t.has(A.INITIATE_TCP)


@pytest.mark.parametrize("state", [S.CONNECT, S.ACTIVE])
def test_delay_open_open_received(state):
    f = fsm_delay_open(state)
    t = f.handle(E.BGP_OPEN, now=1, hold_time=9)
    assert t.event is E.BGP_OPEN_WITH_DELAY_OPEN_TIMER_RUNNING
    assert t.state is S.OPENCONFIRM
    assert t.kinds[:5] == (
        A.STOP_CONNECT_RETRY_TIMER,
        A.STOP_DELAY_OPEN_TIMER,
        A.SEND_OPEN,
        A.SEND_KEEPALIVE,
        A.START_KEEPALIVE_TIMER,
    )
    assert t.get(A.START_KEEPALIVE_TIMER).seconds == 3
    assert t.get(A.START_HOLD_TIMER).seconds == 9
    assert not f.delay_open_running


@pytest.mark.parametrize("state", [S.CONNECT, S.ACTIVE])
def test_delay_open_timer_expires_sends_open(state):
    f = fsm_delay_open(state)
    t = f.handle(E.DELAY_OPEN_TIMER_EXPIRES, now=5)
    assert t.state is S.OPENSENT
    assert t.has(A.SEND_OPEN) and t.get(A.START_HOLD_TIMER).seconds == 240
    assert not f.delay_open_running


def test_delay_open_start_timer_value():
    f = FSM(delay_open_time=7)
    f.handle(E.MANUAL_START, now=0)
    t = f.handle(E.TCP_CR_ACKED, now=0)
    assert t.state is S.CONNECT
    assert t.kinds == (A.STOP_CONNECT_RETRY_TIMER, A.START_DELAY_OPEN_TIMER)
    assert t.get(A.START_DELAY_OPEN_TIMER).seconds == 7
    assert f.delay_open


def test_delay_open_connect_tcp_fails_goes_active():
    f = fsm_delay_open(S.CONNECT)
    t = f.handle(E.TCP_CONNECTION_FAILS, now=1)
    assert t.state is S.ACTIVE
    assert t.has(A.STOP_DELAY_OPEN_TIMER) and t.has(A.START_CONNECT_RETRY_TIMER)
    assert not f.delay_open_running


def test_delay_open_notif_ver_err_not_counted():
    f = fsm_delay_open(S.CONNECT)
    t = f.handle(E.NOTIF_MSG_VER_ERR, now=1)
    assert t.state is S.IDLE and t.has(A.STOP_DELAY_OPEN_TIMER)
    assert not t.has(A.INCREMENT_CONNECT_RETRY_COUNTER)
    assert f.connect_retry_counter == 0


def test_delay_open_active_manual_stop_sends_cease():
    f = fsm_delay_open(S.ACTIVE)
    t = f.handle(E.MANUAL_STOP, now=1)
    assert t.state is S.IDLE and t.notification == (6, 2, b"")
    assert t.has(A.STOP_DELAY_OPEN_TIMER)
    f = FSM(delay_open_time=5, send_notification_without_open=False)
    f.handle(E.MANUAL_START_PASSIVE, now=0)
    f.handle(E.TCP_CONNECTION_CONFIRMED, now=0)
    assert f.handle(E.MANUAL_STOP, now=1).notification is None


def test_send_notification_without_open_off():
    f = fsm_in(S.CONNECT, send_notification_without_open=False)
    t = f.handle(E.BGP_HEADER_ERR, now=0, error=BGPError(1, 1))
    assert t.state is S.IDLE and t.notification is None


def test_delay_open_connect_retry_stops_delay_timer():
    f = fsm_delay_open(S.CONNECT)
    t = f.handle(E.CONNECT_RETRY_TIMER_EXPIRES, now=1)
    assert t.state is S.CONNECT and t.has(A.STOP_DELAY_OPEN_TIMER)
    assert not f.delay_open_running


# -- hold time / keepalive / jitter ---------------------------------------------------


@pytest.mark.parametrize(
    "local,remote,expected",
    [(90, 0, 0), (0, 90, 0), (0, 0, 0), (90, 3, 3), (3, 90, 3), (90, 30, 30), (30, 90, 30), (90, 90, 90), (90, 65535, 90)],
)
def test_negotiate_hold_time(local, remote, expected):
    assert negotiate_hold_time(local, remote) == expected


@pytest.mark.parametrize("remote", [1, 2])
def test_negotiate_hold_time_rejects_1_and_2(remote):
    with pytest.raises(BGPError) as exc:
        negotiate_hold_time(90, remote)
    assert exc.value.notification == (2, 6, b"")
    assert exc.value.action == ACTION_SESSION_RESET


@pytest.mark.parametrize("local,remote", [(1, 90), (2, 90), (-1, 90), (90, -1), (90, 65536)])
def test_negotiate_hold_time_bad_values(local, remote):
    with pytest.raises(ValueError):
        negotiate_hold_time(local, remote)


def test_negotiate_unacceptable_even_with_local_zero():
    with pytest.raises(BGPError):
        negotiate_hold_time(0, 1)


@pytest.mark.parametrize(
    "hold,configured,expected",
    [(0, None, 0), (0, 30, 0), (3, None, 1), (4, None, 1), (9, None, 3), (90, None, 30), (180, None, 60),
     (90, 10, 10), (90, 60, 30), (9, 30, 3)],
)
def test_keepalive_interval(hold, configured, expected):
    assert keepalive_interval(hold, configured) == expected


def test_keepalive_interval_rejects_zero_configured():
    with pytest.raises(ValueError):
        keepalive_interval(90, 0)


def test_jitter_range():
    rnd = random.Random(42)
    values = [jitter(120, rnd) for _ in range(1000)]
    assert all(90 <= v <= 120 for v in values)
    assert min(values) < 95 and max(values) > 115

    class Fixed:
        def __init__(self, x):
            self.x = x

        def random(self):
            return self.x

    assert jitter(100, Fixed(0.0)) == 75
    assert jitter(100, Fixed(0.5)) == 87.5


def test_fsm_applies_jitter_when_given_random_source():
    class Fixed:
        def random(self):
            return 0.0

    f = FSM(rnd=Fixed())
    t = f.handle(E.MANUAL_START, now=0)
    assert t.get(A.START_CONNECT_RETRY_TIMER).seconds == 90
    f.handle(E.TCP_CR_ACKED, now=0)
    t = f.handle(E.BGP_OPEN, now=0, hold_time=90)
    assert t.get(A.START_KEEPALIVE_TIMER).seconds == 22.5
    assert t.get(A.START_HOLD_TIMER).seconds == 90  # the hold timer is never jittered


@pytest.mark.parametrize("hold", [1, 2, -1, 65536])
def test_fsm_rejects_bad_hold_time(hold):
    with pytest.raises(ValueError):
        FSM(hold_time=hold)


def test_notification_and_error_events():
    assert notification_event(2, 1) is E.NOTIF_MSG_VER_ERR
    assert notification_event(2, 2) is E.NOTIF_MSG
    assert notification_event(6, 2) is E.NOTIF_MSG
    assert error_event(BGPError(1, 2)) is E.BGP_HEADER_ERR
    assert error_event(BGPError(2, 6)) is E.BGP_OPEN_MSG_ERR
    assert error_event(BGPError(3, 1)) is E.UPDATE_MSG_ERR
    assert error_event(BGPError(7, 1)) is E.UPDATE_MSG_ERR
    with pytest.raises(ValueError):
        error_event(BGPError(6, 2))


# -- collision -----------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.OPENSENT, S.OPENCONFIRM])
def test_collision_higher_local_id_keeps_our_outbound(state):
    assert resolve_collision(2, 1, state, existing_is_outbound=True) is Collision.KEEP_EXISTING
    assert resolve_collision(2, 1, state, existing_is_outbound=False) is Collision.KEEP_NEW


@pytest.mark.parametrize("state", [S.OPENSENT, S.OPENCONFIRM])
def test_collision_lower_local_id_keeps_peer_initiated(state):
    # RFC 4271 §6.8 step 2: close the existing (ours), accept the remote's.
    assert resolve_collision(1, 2, state, existing_is_outbound=True) is Collision.KEEP_NEW
    assert resolve_collision(1, 2, state, existing_is_outbound=False) is Collision.KEEP_EXISTING


def test_collision_ids_compare_unsigned():
    # 0x80000000 (128.0.0.0) is larger than 0x7fffffff as an unsigned int.
    assert resolve_collision(0x80000000, 0x7FFFFFFF, S.OPENCONFIRM, True) is Collision.KEEP_EXISTING
    assert resolve_collision("128.0.0.1", "127.255.255.255", S.OPENCONFIRM, True) is Collision.KEEP_EXISTING
    assert resolve_collision(b"\x0a\x00\x00\x01", b"\xc0\xa8\x00\x01", S.OPENCONFIRM, True) is Collision.KEEP_NEW
    assert resolve_collision(0xFFFFFFFF, 0, S.OPENCONFIRM, False) is Collision.KEEP_NEW
    with pytest.raises(ValueError):
        resolve_collision(-1, 0, S.OPENCONFIRM, True)
    with pytest.raises(ValueError):
        resolve_collision(1 << 32, 0, S.OPENCONFIRM, True)


def test_collision_with_established_closes_new():
    for outbound in (True, False):
        for ids in ((1, 2), (2, 1), (5, 5)):
            assert resolve_collision(*ids, S.ESTABLISHED, outbound) is Collision.KEEP_EXISTING


def test_collision_detect_established_state():
    assert resolve_collision(1, 2, S.ESTABLISHED, True, detect_established=True) is Collision.KEEP_NEW
    assert resolve_collision(2, 1, S.ESTABLISHED, True, detect_established=True) is Collision.KEEP_EXISTING


@pytest.mark.parametrize("state", [S.IDLE, S.CONNECT, S.ACTIVE])
def test_no_collision_before_opensent(state):
    assert resolve_collision(1, 2, state, True) is Collision.NONE


def test_collision_equal_ids_uses_as_number():
    # RFC 6286 §2.3: the speaker with the larger AS keeps its connection.
    assert resolve_collision(7, 7, S.OPENCONFIRM, True, local_as=65002, remote_as=65001) is Collision.KEEP_EXISTING
    assert resolve_collision(7, 7, S.OPENCONFIRM, True, local_as=65001, remote_as=65002) is Collision.KEEP_NEW
    assert resolve_collision(7, 7, S.OPENCONFIRM, False, local_as=65001, remote_as=65002) is Collision.KEEP_EXISTING


@pytest.mark.parametrize("ases", [{}, {"local_as": 65001, "remote_as": 65001}])
def test_collision_equal_ids_same_as_is_bad_bgp_id(ases):
    with pytest.raises(BGPError) as exc:
        resolve_collision(7, 7, S.OPENCONFIRM, True, **ases)
    assert exc.value.notification == (2, 3, b"")


def test_collision_dump_flow():
    """The session feeds OPEN_COLLISION_DUMP to the losing FSM."""
    existing = fsm_in(S.OPENCONFIRM)
    assert resolve_collision(1, 2, existing.state, True) is Collision.KEEP_NEW
    t = existing.handle(E.OPEN_COLLISION_DUMP, now=0)
    assert t.state is S.IDLE and t.notification == (6, 7, b"") and t.reason is Reason.COLLISION


# -- idle hold / damping ------------------------------------------------------------------


def _flap(fsm, now):
    """Drop an Established session at `now`; return the idle hold time."""
    t = fsm.handle(E.HOLD_TIMER_EXPIRES, now=now)
    assert t.state is S.IDLE
    return t.get(A.START_IDLE_HOLD_TIMER).seconds


def _reestablish(fsm, now):
    fsm.handle(E.IDLE_HOLD_TIMER_EXPIRES, now=now)
    for event, args in PATH[S.ESTABLISHED][1:]:
        fsm.handle(event, now=now, **args)
    assert fsm.state is S.ESTABLISHED


def test_idle_hold_doubles_up_to_cap():
    f = fsm_in(S.ESTABLISHED, idle_hold_time=5, max_idle_hold_time=60, stable_time=300)
    waits = []
    now = 0.0
    for _ in range(7):
        now += 1
        waits.append(_flap(f, now))
        _reestablish(f, now + 0.5)
    assert waits == [5, 10, 20, 40, 60, 60, 60]


def test_idle_hold_resets_after_stable_period():
    f = fsm_in(S.ESTABLISHED, idle_hold_time=5, max_idle_hold_time=60, stable_time=300)
    assert _flap(f, 1) == 5
    _reestablish(f, 2)
    assert _flap(f, 3) == 10
    _reestablish(f, 4)
    assert f.current_idle_hold_time(5) == 20
    assert f.current_idle_hold_time(4 + 300) == 5  # stable: reset
    assert _flap(f, 4 + 299) == 20  # one second short of stable
    _reestablish(f, 1000)
    assert _flap(f, 1000 + 300) == 5
    _reestablish(f, 1400)
    assert _flap(f, 1401) == 10


def test_idle_hold_grows_on_connect_failures():
    f = FSM(idle_hold_time=2, max_idle_hold_time=16)
    f.handle(E.MANUAL_START, now=0)
    waits = []
    for i in range(6):
        t = f.handle(E.TCP_CONNECTION_FAILS, now=i)
        assert t.state is S.IDLE and t.reason is Reason.CONNECT_FAILED
        waits.append(t.get(A.START_IDLE_HOLD_TIMER).seconds)
        assert f.handle(E.IDLE_HOLD_TIMER_EXPIRES, now=i + 0.5).state is S.CONNECT
    assert waits == [2, 4, 8, 16, 16, 16]
    # RFC 4271 §8.2.2 Connect event 18 does not count a retry.
    assert f.connect_retry_counter == 0


def test_no_damping_keeps_constant_idle_hold():
    f = fsm_in(S.ESTABLISHED, damp_peer_oscillations=False, idle_hold_time=3)
    assert _flap(f, 1) == 3
    _reestablish(f, 2)
    assert _flap(f, 3) == 3


def test_record_flap_is_explicit_about_time():
    f = FSM(idle_hold_time=1, max_idle_hold_time=8)
    assert [f.record_flap(now) for now in range(5)] == [1, 2, 4, 8, 8]
    f.reset_idle_hold()
    assert f.record_flap(10) == 1


def test_manual_stop_does_not_restart_and_blocks_automatic_start():
    f = fsm_in(S.ESTABLISHED)
    t = f.handle(E.MANUAL_STOP, now=0)
    assert not t.has(A.START_IDLE_HOLD_TIMER)
    assert f.admin_down
    assert f.handle(E.AUTOMATIC_START, now=1).state is S.IDLE
    assert f.handle(E.IDLE_HOLD_TIMER_EXPIRES, now=1).state is S.IDLE
    t = f.handle(E.MANUAL_START, now=2)
    assert t.state is S.CONNECT and not f.admin_down


def test_manual_stop_in_idle_cancels_pending_restart():
    f = fsm_in(S.ESTABLISHED)
    f.handle(E.HOLD_TIMER_EXPIRES, now=0)
    assert f.idle_hold_running
    t = f.handle(E.MANUAL_STOP, now=1)
    assert t.state is S.IDLE and t.kinds == (A.STOP_IDLE_HOLD_TIMER,)
    assert not f.idle_hold_running
    assert f.handle(E.IDLE_HOLD_TIMER_EXPIRES, now=6).state is S.IDLE


def test_manual_start_during_idle_hold_stops_the_timer():
    f = fsm_in(S.ESTABLISHED)
    f.handle(E.HOLD_TIMER_EXPIRES, now=0)
    t = f.handle(E.MANUAL_START, now=1)
    assert t.state is S.CONNECT and t.kinds[0] is A.STOP_IDLE_HOLD_TIMER
    assert not f.idle_hold_running


def test_idle_hold_expiry_does_not_emit_stop():
    f = fsm_in(S.ESTABLISHED)
    f.handle(E.HOLD_TIMER_EXPIRES, now=0)
    t = f.handle(E.IDLE_HOLD_TIMER_EXPIRES, now=5)
    assert t.kinds == (A.START_CONNECT_RETRY_TIMER, A.INITIATE_TCP)


def test_damped_automatic_start_waits_for_idle_hold():
    f = fsm_in(S.ESTABLISHED)
    f.handle(E.HOLD_TIMER_EXPIRES, now=0)
    assert f.handle(E.AUTOMATIC_START_DAMP, now=1).state is S.IDLE
    assert f.handle(E.IDLE_HOLD_TIMER_EXPIRES, now=5).state is S.CONNECT


def test_no_automatic_restart_when_disallowed():
    f = fsm_in(S.ESTABLISHED, allow_automatic_start=False)
    t = f.handle(E.HOLD_TIMER_EXPIRES, now=0)
    assert not t.has(A.START_IDLE_HOLD_TIMER)
    assert f.handle(E.IDLE_HOLD_TIMER_EXPIRES, now=5).state is S.IDLE


# -- counters / timestamps ------------------------------------------------------------------


def test_connect_retry_counter():
    f = fsm_in(S.ESTABLISHED)
    assert f.connect_retry_counter == 0
    t = f.handle(E.HOLD_TIMER_EXPIRES, now=1)
    assert t.has(A.INCREMENT_CONNECT_RETRY_COUNTER)
    assert f.connect_retry_counter == 1
    f.handle(E.IDLE_HOLD_TIMER_EXPIRES, now=6)  # automatic restart keeps the count
    f.handle(E.TCP_CR_ACKED, now=6)
    f.handle(E.UPDATE_MSG, now=7)  # FSM error in OpenSent
    assert f.connect_retry_counter == 2
    f.handle(E.MANUAL_STOP, now=8)  # RFC 4271: ManualStop zeroes it
    assert f.connect_retry_counter == 0
    f.handle(E.MANUAL_START, now=9)
    f.handle(E.TCP_CR_ACKED, now=9)
    f.handle(E.HOLD_TIMER_EXPIRES, now=10)
    assert f.connect_retry_counter == 1
    f.handle(E.AUTOMATIC_START, now=11)  # RFC 4271 Idle: a start zeroes it
    assert f.connect_retry_counter == 0


def test_manual_stop_zeroes_counter_without_increment_action():
    f = fsm_in(S.OPENCONFIRM)
    t = f.handle(E.MANUAL_STOP, now=0)
    assert not t.has(A.INCREMENT_CONNECT_RETRY_COUNTER)
    assert f.connect_retry_counter == 0


def test_established_count_uptime_downtime():
    f = FSM()
    assert f.established_count == 0 and f.uptime is None and f.downtime is None
    for event, args in PATH[S.ESTABLISHED]:
        f.handle(event, now=100.0, **args)
    assert f.established_count == 1 and f.uptime == 100.0 and f.downtime is None
    f.handle(E.UPDATE_MSG, now=150.0)
    assert f.uptime == 100.0 and f.last_change == 100.0
    f.handle(E.NOTIF_MSG, now=200.0)
    assert f.downtime == 200.0 and f.last_change == 200.0
    assert f.last_reason is Reason.NOTIFICATION_RECEIVED
    assert f.negotiated_hold_time is None
    _reestablish(f, 300.0)
    assert f.established_count == 2 and f.uptime == 300.0 and f.downtime == 200.0


# -- subscription -------------------------------------------------------------------------------


def test_subscribe_reports_every_state_change():
    f = FSM()
    got = []
    unsubscribe = f.subscribe(lambda old, new, reason: got.append((old, new, reason)))
    for event, args in PATH[S.ESTABLISHED]:
        f.handle(event, now=0, **args)
    f.handle(E.KEEPALIVE_MSG, now=1)  # no change: no callback
    f.handle(E.MANUAL_STOP, now=2)
    assert got == [
        (S.IDLE, S.CONNECT, Reason.ADMIN_UP),
        (S.CONNECT, S.OPENSENT, Reason.TCP_ESTABLISHED),
        (S.OPENSENT, S.OPENCONFIRM, Reason.OPEN_MSG_RECEIVED),
        (S.OPENCONFIRM, S.ESTABLISHED, Reason.OPEN_MSG_NEGOTIATED),
        (S.ESTABLISHED, S.IDLE, Reason.ADMIN_DOWN),
    ]
    unsubscribe()
    unsubscribe()  # idempotent
    f.handle(E.MANUAL_START, now=3)
    assert len(got) == 5


def test_subscriber_sees_committed_state_and_failures_are_isolated(caplog):
    f = FSM()
    seen = []

    def bad(old, new, reason):
        raise RuntimeError("boom")

    f.subscribe(bad)
    f.subscribe(lambda old, new, reason: seen.append(f.state))
    t = f.handle(E.MANUAL_START, now=0)
    assert t.state is S.CONNECT
    assert seen == [S.CONNECT]
    assert "boom" in caplog.text


def test_transition_helpers():
    t = fsm_in(S.ESTABLISHED).handle(E.HOLD_TIMER_EXPIRES, now=0)
    assert t.changed
    assert t.get(A.SEND_NOTIFICATION) == Act(A.SEND_NOTIFICATION, code=4, subcode=0)
    assert t.get(A.SEND_OPEN) is None
    assert t.kinds[0] is A.SEND_NOTIFICATION
    assert "SEND_NOTIFICATION 4/0" in repr(t.actions[0])
    with pytest.raises(Exception):
        t.state = S.IDLE  # frozen


def test_state_values_match_mib():
    assert [s.value for s in S] == [1, 2, 3, 4, 5, 6]
    assert E.MANUAL_START == 1 and E.UPDATE_MSG_ERR == 28

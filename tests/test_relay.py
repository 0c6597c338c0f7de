"""fastbgp.daemon.relay: N workers' messages for one session merged into
what the peer gets (``workers = N``)."""

import pytest
from hypothesis import given, settings, strategies as st

from fastbgp.daemon import relay as R
from fastbgp.wire import messages as M

MARKER = b"\xff" * 16


def msg(t, body=b""):
    return MARKER + (R.HEADER + len(body)).to_bytes(2, "big") + bytes([t]) + body


OPEN = msg(R.OPEN, b"\x04" + b"\x00" * 9)
KEEPALIVE = msg(R.KEEPALIVE)
NOTIFY = msg(R.NOTIFICATION, b"\x06\x02")


def update(i):
    """A distinct plain UPDATE (one withdrawn /24 per ``i``)."""
    return msg(R.UPDATE, b"\x00\x04\x18" + (i & 0xFFFFFF).to_bytes(3, "big") + b"\x00\x00")


def eor(afi=1, safi=1):
    body = M.encode_update(M.Update(attributes=[M.MpUnreach(afi=afi, safi=safi, nlri=[])])) if (afi, safi) != (1, 1) \
        else M.encode_update(M.Update())
    return MARKER + (R.HEADER + len(body)).to_bytes(2, "big") + bytes([R.UPDATE]) + body


def refresh(sub, afi=1, safi=1):
    return msg(R.ROUTE_REFRESH, afi.to_bytes(2, "big") + bytes([sub, safi]))


def test_end_of_rib_is_what_the_message_model_calls_one():
    assert R.end_of_rib(eor()) == (1, 1)
    assert R.end_of_rib(eor(2, 1)) == (2, 1)
    assert R.end_of_rib(eor(1, 4)) == (1, 4)
    assert R.end_of_rib(update(5)) is None
    assert R.end_of_rib(msg(R.UPDATE, b"\x00\x00")) is None  # malformed: not a marker
    # An UPDATE with prefixes is never one, whatever its size.
    big = M.Update(withdrawn=[M.Prefix("10.%d.0.0/16" % i) for i in range(40)])
    body = M.encode_update(big)
    assert R.end_of_rib(MARKER + (R.HEADER + len(body)).to_bytes(2, "big") + b"\x02" + body) is None


def test_session_messages_go_out_once_and_workers_updates_wait_for_the_primarys_keepalive():
    m = R.Merge(2)
    assert m.take(1, [OPEN]) == []
    assert m.take(0, [OPEN]) == [OPEN]
    # Worker 1 reached Established first: its UPDATEs wait.
    assert m.take(1, [KEEPALIVE, update(1), update(2)]) == []
    assert m.take(0, [KEEPALIVE, update(3)]) == [KEEPALIVE, update(1), update(2), update(3)]
    assert m.take(1, [update(4), KEEPALIVE]) == [update(4)]
    assert m.take(0, [KEEPALIVE]) == [KEEPALIVE]


def test_end_of_rib_goes_out_once_every_worker_sent_its_table():
    m = R.Merge(3)
    m.take(0, [OPEN, KEEPALIVE])
    assert m.take(0, [update(1), eor()]) == [update(1)]
    assert m.take(2, [eor(), eor(2, 1)]) == []
    assert m.take(1, [update(2), eor(2, 1)]) == [update(2)]
    assert m.take(1, [eor()]) == [eor()]
    assert m.take(0, [eor(2, 1)]) == [eor(2, 1)]
    # A later round (a peer restarting the table) starts over.
    assert m.take(0, [eor()]) == []


def test_enhanced_route_refresh_first_borr_and_last_eorr():
    m = R.Merge(2)
    m.take(0, [OPEN, KEEPALIVE])
    assert m.take(1, [refresh(R.RR_BORR), update(7)]) == [refresh(R.RR_BORR), update(7)]
    assert m.take(0, [refresh(R.RR_BORR), update(8), refresh(R.RR_EORR)]) == [update(8)]
    assert m.take(1, [refresh(R.RR_EORR)]) == [refresh(R.RR_EORR)]
    # Requests (soft reset in) come from every worker alike: one goes out.
    assert m.take(1, [refresh(R.RR_REQUEST)]) == []
    assert m.take(0, [refresh(R.RR_REQUEST)]) == [refresh(R.RR_REQUEST)]


def test_the_first_notification_ends_the_session():
    m = R.Merge(2)
    m.take(0, [OPEN, KEEPALIVE])
    assert m.take(1, [update(1), NOTIFY, update(2)]) == [update(1), NOTIFY]
    assert m.ended and m.ended_by == 1
    assert m.take(0, [NOTIFY, update(3)]) == []


def test_held_messages_are_bounded():
    m = R.Merge(2)
    big = msg(R.UPDATE, b"\x00\x00\x00\x00" + b"\x00" * 4000)
    with pytest.raises(OverflowError):
        for _ in range(R.HELD_MAX // len(big) + 2):
            m.take(1, [big])


def test_framer_cuts_whole_messages_across_reads_and_refuses_bad_lengths():
    stream = OPEN + KEEPALIVE + update(1) + eor()
    f = R.Framer()
    got = []
    for i in range(0, len(stream), 7):
        got += f.feed(stream[i:i + 7])
    assert got == [OPEN, KEEPALIVE, update(1), eor()]
    with pytest.raises(ValueError):
        R.Framer().feed(MARKER + b"\x00\x05\x04")


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 4), st.data())
def test_any_interleaving_sends_each_update_once_and_end_of_rib_last(n, data):
    """Each worker: OPEN, KEEPALIVE, its own UPDATEs, End-of-RIB; the
    workers' streams cut into chunks and interleaved at random."""
    streams = []
    for k in range(n):
        ups = [update(1000 * k + i) for i in range(data.draw(st.integers(0, 5)))]
        streams.append([OPEN, KEEPALIVE] + ups + [eor()])
    m = R.Merge(n)
    pos = [0] * n
    out = []
    while any(pos[k] < len(streams[k]) for k in range(n)):
        k = data.draw(st.sampled_from([k for k in range(n) if pos[k] < len(streams[k])]))
        take = data.draw(st.integers(1, len(streams[k]) - pos[k]))
        out += m.take(k, streams[k][pos[k]:pos[k] + take])
        pos[k] += take
    assert out[:2] == [OPEN, KEEPALIVE]
    assert out[-1] == eor() and out.count(eor()) == 1
    sent = out[2:-1]
    want = [u for s in streams for u in s[2:-1]]
    assert sorted(sent) == sorted(want) and len(sent) == len(set(sent))
    # Each worker's UPDATEs keep their order.
    for s in streams:
        ups = s[2:-1]
        assert [u for u in sent if u in ups] == ups


def long_update(i, n=3):
    """An UPDATE too long to be an End-of-RIB: ``n`` withdrawn /24s."""
    nlri = b"".join(b"\x18" + ((i * 16 + j) & 0xFFFFFF).to_bytes(3, "big") for j in range(n))
    return msg(R.UPDATE, len(nlri).to_bytes(2, "big") + nlri + b"\x00\x00")


def one_by_one(stream):
    """The stream's messages, each alone (the reference the framer's runs
    must merge as)."""
    out, pos = [], 0
    while pos < len(stream):
        ln = int.from_bytes(stream[pos + 16:pos + 18], "big")
        out.append(stream[pos:pos + ln])
        pos += ln
    return out


def test_framer_joins_long_updates_into_runs_and_keeps_the_rest_alone():
    assert long_update(1) and len(long_update(1)) > R.EOR_MAX and len(update(1)) <= R.EOR_MAX
    stream = (OPEN + KEEPALIVE + long_update(1) + long_update(2) + update(3) + long_update(4) + eor()
              + long_update(5) + long_update(6))
    assert R.Framer().feed(stream) == [OPEN, KEEPALIVE, long_update(1) + long_update(2), update(3), long_update(4),
                                       eor(), long_update(5) + long_update(6)]
    # Cut anywhere: a run ends where the read ends (never inside a message).
    f = R.Framer()
    got = []
    for i in range(0, len(stream), 50):
        got += f.feed(stream[i:i + 50])
    assert b"".join(got) == stream
    assert all(one_by_one(item) == [item] or all(m[18] == R.UPDATE and len(m) > R.EOR_MAX for m in one_by_one(item))
               for item in got)


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 3), st.data())
def test_runs_are_merged_as_their_messages_one_by_one(n, data):
    """Workers' streams of session messages, long and short UPDATEs,
    End-of-RIBs, refreshes and a NOTIFICATION now and then, cut into reads
    at random: what the peer gets is the same octets, whether the framer's
    runs or each message alone go through Merge; so is the held bound."""
    kinds = st.sampled_from(["long", "long", "long", "short", "eor", "keepalive", "refresh", "notify", "notify-long"])
    long_open = msg(R.OPEN, b"\x04" + b"\x00" * 9 + b"\x02\x10" + b"\x41\x04\x00\x00\xfd\xe9" * 2 + b"\x02\x04\x00\x01")
    streams = []
    for k in range(n):
        body = b""
        for j, kind in enumerate(data.draw(st.lists(kinds, max_size=12))):
            body += {"long": lambda: long_update(1000 * k + j, data.draw(st.integers(2, 40))),
                     "short": lambda: update(1000 * k + j), "eor": eor, "keepalive": lambda: KEEPALIVE,
                     "refresh": lambda: refresh(R.RR_BORR) if j % 2 else refresh(R.RR_EORR),
                     "notify": lambda: NOTIFY,
                     "notify-long": lambda: msg(R.NOTIFICATION, b"\x06\x04" + b"!" * 20)}[kind]()
        first = long_open if data.draw(st.booleans()) else OPEN  # an OPEN with capabilities is long
        streams.append(first + (KEEPALIVE if k == 0 or data.draw(st.booleans()) else b"") + body)
    reads = []
    pos = [0] * n
    while any(pos[k] < len(streams[k]) for k in range(n)):
        k = data.draw(st.sampled_from([k for k in range(n) if pos[k] < len(streams[k])]))
        step = data.draw(st.integers(1, 400))
        reads.append((k, streams[k][pos[k]:pos[k] + step]))
        pos[k] += step
    merged, reference = R.Merge(n), R.Merge(n)
    framers, cutters = [R.Framer() for _ in range(n)], [R.Framer() for _ in range(n)]
    got, want = [], []
    for k, chunk in reads:
        got += merged.take(k, framers[k].feed(chunk))
        want += reference.take(k, [m for item in cutters[k].feed(chunk) for m in one_by_one(item)])
    assert b"".join(got) == b"".join(want)
    assert (merged.ended, merged.ended_by, merged.notification, merged.held_bytes) == \
        (reference.ended, reference.ended_by, reference.notification, reference.held_bytes)

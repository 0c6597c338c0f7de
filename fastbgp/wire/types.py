"""Types shared by both codec implementations: the session context they take
and the results they return.  Defining them once here is what makes the
compiled codec and its pure-Python twin return equal (==) values.
"""

import msgspec

from fastbgp.wire.constants import MAX_EXTENDED_MESSAGE_LEN, MAX_MESSAGE_LEN


class Context(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # RFC 6793: both sides sent the 4-octet AS capability; AS numbers in
    # AS_PATH/AGGREGATOR are then 4 octets wide.
    as4: bool = True
    # RFC 7911: (afi, safi) families in which we receive / send path ids.
    addpath_rx: frozenset = frozenset()
    addpath_tx: frozenset = frozenset()
    # RFC 8654: messages other than OPEN/KEEPALIVE may reach 65535 octets.
    extended_message: bool = False
    # The peer is in another AS: LOCAL_PREF from it is discarded (RFC 7606 §7.5).
    ebgp: bool = False

    @property
    def max_message_len(self):
        return MAX_EXTENDED_MESSAGE_LEN if self.extended_message else MAX_MESSAGE_LEN


DEFAULT_CONTEXT = Context()


class ParsedUpdate(msgspec.Struct, frozen=True, gc=False):
    """The fast-path view of one UPDATE: prefixes stay packed in wire format
    (path ids included where ADD-PATH is negotiated), attributes stay one
    bytes block ready for interning.

    ``attrs`` is canonical: MP_REACH/MP_UNREACH removed (they carry NLRI),
    discarded attributes removed, and AS numbers always 4 octets wide (the
    AS4_PATH/AS4_AGGREGATOR of a 2-octet peer merged per RFC 6793 §4.2.3).
    """

    withdrawn: bytes  # IPv4 unicast withdrawn routes, packed
    attrs: bytes
    nlri: bytes  # IPv4 unicast NLRI, packed
    next_hop: bytes  # NEXT_HOP value (4 octets) or b""
    mp_reach: object  # None or (afi, safi, next_hop bytes, packed nlri)
    mp_unreach: object  # None or (afi, safi, packed nlri)
    n_announced: int  # prefixes in nlri + mp_reach (known families)
    n_withdrawn: int
    # RFC 7606: strongest action applied; TREAT_AS_WITHDRAW means every
    # announced prefix must be handled as withdrawn (attrs is then b"").
    action: int = 0
    errors: tuple = ()  # the BGPErrors handled without a session reset

    @property
    def treat_as_withdraw(self):
        return self.action == 2

    @property
    def is_eor(self):
        """RFC 4724 §2: End-of-RIB is an UPDATE with nothing but an empty
        withdrawal (IPv4) or an empty MP_UNREACH (other families)."""
        if self.nlri or self.withdrawn or self.mp_reach is not None:
            return False
        if self.mp_unreach is None:
            return not self.attrs
        return not self.mp_unreach[2] and not self.attrs


class ParsedOpen(msgspec.Struct, frozen=True):
    version: int
    asn: int  # the 2-octet My Autonomous System field (AS_TRANS for 4-octet ASNs)
    hold_time: int
    bgp_id: int
    capabilities: tuple  # ((code, value bytes), ...) in received order
    params: tuple = ()  # other optional parameters ((type, value), ...)
    extended_params: bool = False  # RFC 9072 encoding was used

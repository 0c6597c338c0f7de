"""MRT (RFC 6396) vocabulary shared by the reader and the writer: type and
subtype numbers, their names, and the record types -- small frozen msgspec
Structs -- that :class:`fastbgp.mrt.reader.MrtReader` yields and
:mod:`fastbgp.mrt.writer` encodes.

Addresses travel as text in the records ("192.0.2.1", "2001:db8::/32");
``ip_bytes`` and ``prefix_bytes`` turn them back into octets.

The record types are made on first use (PEP 562 ``__getattr__``): the
numbers are all ``fastbgp mrt dump`` needs when its compiled fast path
prints every record, and msgspec costs about 14 ms of start-up.
"""

import _thread  # not threading: its import costs more start-up than the rest of this module
import struct

from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, SAFI_MULTICAST, SAFI_UNICAST

__all__ = (
    "BGP4MP",
    "BGP4MP_ENTRY",
    "BGP4MP_ET",
    "BGP4MP_MESSAGE",
    "BGP4MP_MESSAGE_ADDPATH",
    "BGP4MP_MESSAGE_AS4",
    "BGP4MP_MESSAGE_AS4_ADDPATH",
    "BGP4MP_MESSAGE_AS4_LOCAL",
    "BGP4MP_MESSAGE_AS4_LOCAL_ADDPATH",
    "BGP4MP_MESSAGE_LOCAL",
    "BGP4MP_MESSAGE_LOCAL_ADDPATH",
    "BGP4MP_SNAPSHOT",
    "BGP4MP_STATE_CHANGE",
    "BGP4MP_STATE_CHANGE_AS4",
    "ET_TYPES",
    "HEADER",
    "MESSAGE_SUBTYPES",
    "PEER_INDEX_TABLE",
    "RECORD_TYPES",
    "RIB_FAMILIES",
    "RIB_GENERIC",
    "RIB_GENERIC_ADDPATH",
    "RIB_IPV4_MULTICAST",
    "RIB_IPV4_MULTICAST_ADDPATH",
    "RIB_IPV4_UNICAST",
    "RIB_IPV4_UNICAST_ADDPATH",
    "RIB_IPV6_MULTICAST",
    "RIB_IPV6_MULTICAST_ADDPATH",
    "RIB_IPV6_UNICAST",
    "RIB_IPV6_UNICAST_ADDPATH",
    "STATE_NAMES",
    "SUBTYPE_NAMES",
    "TABLE_DUMP",
    "TABLE_DUMP_AFI_IPV4",
    "TABLE_DUMP_AFI_IPV6",
    "TABLE_DUMP_V2",
    "TYPE_NAMES",
    "Bgp4mpEntry",
    "Bgp4mpMessage",
    "Bgp4mpStateChange",
    "CorruptRecord",
    "MrtFormatError",
    "MrtRecord",
    "Peer",
    "PeerIndexTable",
    "RibEntry",
    "RibRecord",
    "TableDump",
    "TruncatedRecord",
    "UnknownRecord",
    "ip_bytes",
    "prefix_bytes",
)

# ---------------------------------------------------------------- numbers

# RFC 6396 §4: MRT types this module decodes.
TABLE_DUMP = 12
TABLE_DUMP_V2 = 13
BGP4MP = 16
BGP4MP_ET = 17
# RFC 6396 §3: the _ET types carry an extra microsecond field, counted in
# the record length (ISIS_ET and OSPFv3_ET are skipped over as unknown).
ET_TYPES = frozenset((BGP4MP_ET, 33, 49))

# RFC 6396 §4.2: the TABLE_DUMP subtype is the AFI of the prefix.
TABLE_DUMP_AFI_IPV4 = 1
TABLE_DUMP_AFI_IPV6 = 2

# RFC 6396 §4.3 and RFC 8050 §4: TABLE_DUMP_V2 subtypes.
PEER_INDEX_TABLE = 1
RIB_IPV4_UNICAST = 2
RIB_IPV4_MULTICAST = 3
RIB_IPV6_UNICAST = 4
RIB_IPV6_MULTICAST = 5
RIB_GENERIC = 6
RIB_IPV4_UNICAST_ADDPATH = 8
RIB_IPV4_MULTICAST_ADDPATH = 9
RIB_IPV6_UNICAST_ADDPATH = 10
RIB_IPV6_MULTICAST_ADDPATH = 11
RIB_GENERIC_ADDPATH = 12

# (afi, safi, addpath) of each AFI/SAFI-specific RIB subtype.
RIB_FAMILIES = {
    RIB_IPV4_UNICAST: (AFI_IPV4, SAFI_UNICAST, False),
    RIB_IPV4_MULTICAST: (AFI_IPV4, SAFI_MULTICAST, False),
    RIB_IPV6_UNICAST: (AFI_IPV6, SAFI_UNICAST, False),
    RIB_IPV6_MULTICAST: (AFI_IPV6, SAFI_MULTICAST, False),
    RIB_IPV4_UNICAST_ADDPATH: (AFI_IPV4, SAFI_UNICAST, True),
    RIB_IPV4_MULTICAST_ADDPATH: (AFI_IPV4, SAFI_MULTICAST, True),
    RIB_IPV6_UNICAST_ADDPATH: (AFI_IPV6, SAFI_UNICAST, True),
    RIB_IPV6_MULTICAST_ADDPATH: (AFI_IPV6, SAFI_MULTICAST, True),
}

# RFC 6396 §4.4 and RFC 8050 §3: BGP4MP / BGP4MP_ET subtypes.
BGP4MP_STATE_CHANGE = 0
BGP4MP_MESSAGE = 1
BGP4MP_ENTRY = 2  # deprecated (RFC 6396 §4.4 lists it as unused); OpenBGPD still writes it
BGP4MP_SNAPSHOT = 3  # deprecated
BGP4MP_MESSAGE_AS4 = 4
BGP4MP_STATE_CHANGE_AS4 = 5
BGP4MP_MESSAGE_LOCAL = 6
BGP4MP_MESSAGE_AS4_LOCAL = 7
BGP4MP_MESSAGE_ADDPATH = 8
BGP4MP_MESSAGE_AS4_ADDPATH = 9
BGP4MP_MESSAGE_LOCAL_ADDPATH = 10
BGP4MP_MESSAGE_AS4_LOCAL_ADDPATH = 11

# subtype -> (as4, local, addpath) for the message subtypes.
MESSAGE_SUBTYPES = {
    BGP4MP_MESSAGE: (False, False, False),
    BGP4MP_MESSAGE_AS4: (True, False, False),
    BGP4MP_MESSAGE_LOCAL: (False, True, False),
    BGP4MP_MESSAGE_AS4_LOCAL: (True, True, False),
    BGP4MP_MESSAGE_ADDPATH: (False, False, True),
    BGP4MP_MESSAGE_AS4_ADDPATH: (True, False, True),
    BGP4MP_MESSAGE_LOCAL_ADDPATH: (False, True, True),
    BGP4MP_MESSAGE_AS4_LOCAL_ADDPATH: (True, True, True),
}

TYPE_NAMES = {TABLE_DUMP: "TABLE_DUMP", TABLE_DUMP_V2: "TABLE_DUMP_V2", BGP4MP: "BGP4MP", BGP4MP_ET: "BGP4MP_ET"}
SUBTYPE_NAMES = {
    TABLE_DUMP: {1: "AFI_IPv4", 2: "AFI_IPv6"},
    TABLE_DUMP_V2: {
        1: "PEER_INDEX_TABLE",
        2: "RIB_IPV4_UNICAST",
        3: "RIB_IPV4_MULTICAST",
        4: "RIB_IPV6_UNICAST",
        5: "RIB_IPV6_MULTICAST",
        6: "RIB_GENERIC",
        8: "RIB_IPV4_UNICAST_ADDPATH",
        9: "RIB_IPV4_MULTICAST_ADDPATH",
        10: "RIB_IPV6_UNICAST_ADDPATH",
        11: "RIB_IPV6_MULTICAST_ADDPATH",
        12: "RIB_GENERIC_ADDPATH",
    },
}
SUBTYPE_NAMES[BGP4MP] = SUBTYPE_NAMES[BGP4MP_ET] = {
    0: "STATE_CHANGE",
    1: "MESSAGE",
    2: "ENTRY",
    3: "SNAPSHOT",
    4: "MESSAGE_AS4",
    5: "STATE_CHANGE_AS4",
    6: "MESSAGE_LOCAL",
    7: "MESSAGE_AS4_LOCAL",
    8: "MESSAGE_ADDPATH",
    9: "MESSAGE_AS4_ADDPATH",
    10: "MESSAGE_LOCAL_ADDPATH",
    11: "MESSAGE_AS4_LOCAL_ADDPATH",
}

# RFC 4271 §8.2.2 FSM states as numbered in STATE_CHANGE (RFC 6396 §4.4.1).
STATE_NAMES = {1: "Idle", 2: "Connect", 3: "Active", 4: "OpenSent", 5: "OpenConfirm", 6: "Established"}

# RFC 6396 §2: the common header -- timestamp, type, subtype, length.
HEADER = struct.Struct(">IHHI")


# ---------------------------------------------------------------- records

# The record classes, in the order they are defined.
STRUCT_NAMES = (
    "MrtRecord", "TableDump", "Peer", "PeerIndexTable", "RibEntry", "RibRecord", "Bgp4mpStateChange",
    "Bgp4mpMessage", "Bgp4mpEntry", "UnknownRecord", "CorruptRecord", "TruncatedRecord", "RECORD_TYPES",
)  # fmt: skip


def _define():
    """Define the record classes (and RECORD_TYPES) as module globals."""
    global MrtRecord, TableDump, Peer, PeerIndexTable, RibEntry, RibRecord
    import msgspec

    class MrtRecord(msgspec.Struct, frozen=True, gc=False):
        """Common header (RFC 6396 §2): seconds, microseconds (non-zero only in
        _ET records), type and subtype."""

        timestamp: int
        microsecond: int
        type: int
        subtype: int

        @property
        def time(self):
            return self.timestamp + self.microsecond / 1e6

        @property
        def type_name(self):
            return TYPE_NAMES.get(self.type, str(self.type))

        @property
        def subtype_name(self):
            return SUBTYPE_NAMES.get(self.type, {}).get(self.subtype, str(self.subtype))

    class TableDump(MrtRecord, frozen=True, gc=False):
        """TABLE_DUMP (RFC 6396 §4.2): one prefix as seen from one peer.
        AS numbers are 2 octets wide in this type."""

        view: int
        sequence: int
        prefix: str  # "address/length", address as stored (host bits kept)
        status: int
        originated: int
        peer_ip: str
        peer_as: int
        attrs: bytes  # the path attributes as stored
        update: object = None  # ParsedUpdate of the attributes, or None
        error: object = None  # why update is None (str)

    class Peer(msgspec.Struct, frozen=True, gc=False):
        """One PEER_INDEX_TABLE entry (RFC 6396 §4.3.1)."""

        bgp_id: str
        ip: str
        asn: int
        as4: bool = True  # peer type bit 1: the AS field is 4 octets wide

    class PeerIndexTable(MrtRecord, frozen=True, gc=False):
        collector_id: str
        view_name: str
        peers: tuple

    class RibEntry(msgspec.Struct, frozen=True, gc=False):
        """One RIB entry (RFC 6396 §4.3.4; path_id per RFC 8050 §4)."""

        peer_index: int
        originated: int
        attrs: bytes  # as stored (4-octet AS, abbreviated MP_REACH_NLRI)
        path_id: int = 0
        update: object = None  # ParsedUpdate of the attributes (no NLRI), or None
        error: object = None

        @property
        def next_hop(self):
            """The route's next hop bytes: NEXT_HOP, else the MP_REACH next hop."""
            u = self.update
            if u is None:
                return b""
            if u.mp_reach is not None:
                return u.mp_reach[2]
            return u.next_hop

    class RibRecord(MrtRecord, frozen=True, gc=False):
        """RIB_IPV4/IPV6_UNICAST/MULTICAST, RIB_GENERIC and their RFC 8050
        *_ADDPATH variants: one prefix and every peer's route to it."""

        sequence: int
        afi: int
        safi: int
        prefix: str  # "address/length" (host bits cleared); "" when the family is unknown
        entries: tuple
        nlri: bytes = b""  # RIB_GENERIC: the NLRI as stored

        @property
        def addpath(self):
            return self.subtype >= RIB_IPV4_UNICAST_ADDPATH

    _define_messages(msgspec)


def _define_messages(msgspec):
    """The BGP4MP record classes and those of records that did not decode
    (the second half of _define: one function would pass 120 lines)."""
    global Bgp4mpStateChange, Bgp4mpMessage, Bgp4mpEntry, UnknownRecord, CorruptRecord, TruncatedRecord, RECORD_TYPES

    class Bgp4mpStateChange(MrtRecord, frozen=True, gc=False):
        """STATE_CHANGE / STATE_CHANGE_AS4 (RFC 6396 §4.4.1, §4.4.4)."""

        peer_as: int
        local_as: int
        ifindex: int
        afi: int
        peer_ip: str
        local_ip: str
        old_state: int
        new_state: int

    class Bgp4mpMessage(MrtRecord, frozen=True, gc=False):
        """MESSAGE and its AS4 / LOCAL / ADDPATH variants (RFC 6396 §4.4.2,
        §4.4.3, §4.4.6, §4.4.7; RFC 8050 §3).  ``message`` is the whole BGP
        message, 19-octet header included."""

        peer_as: int
        local_as: int
        ifindex: int
        afi: int
        peer_ip: str
        local_ip: str
        message: bytes
        update: object = None  # ParsedUpdate for a well-formed UPDATE
        error: object = None  # str: why an UPDATE (or the header) did not decode
        # The UPDATE carries RFC 7911 path identifiers: set by the *_ADDPATH
        # subtypes, and also when an UPDATE only parses with path ids (BIRD 1.6
        # wrote ADD-PATH sessions under the plain subtypes).
        addpath: bool = False

        @property
        def msg_type(self):
            m = self.message
            return m[18] if len(m) > 18 else 0

        @property
        def body(self):
            return self.message[19:]

        @property
        def as4(self):
            return MESSAGE_SUBTYPES.get(self.subtype, (True, False, False))[0]

        @property
        def local(self):
            return MESSAGE_SUBTYPES.get(self.subtype, (True, False, False))[1]

    class Bgp4mpEntry(MrtRecord, frozen=True, gc=False):
        """The deprecated BGP4MP_ENTRY (subtype 2) that OpenBGPD writes for
        table dumps: BGP4MP header, then view, status, originated time, AFI,
        SAFI, next hop, one prefix and its attributes (2-octet AS_PATH)."""

        peer_as: int
        local_as: int
        ifindex: int
        afi: int
        peer_ip: str
        local_ip: str
        view: int
        status: int
        originated: int
        entry_afi: int
        safi: int
        next_hop: bytes
        prefix: str
        attrs: bytes
        update: object = None
        error: object = None

    class UnknownRecord(MrtRecord, frozen=True, gc=False):
        """A type/subtype this reader does not decode (kept verbatim)."""

        data: bytes

    class CorruptRecord(MrtRecord, frozen=True, gc=False):
        """A record whose body does not match its declared type; the stream
        goes on with the next record (the length field is still trusted)."""

        offset: int  # of the record header in the decompressed stream
        reason: str
        data: bytes

    class TruncatedRecord(MrtRecord, frozen=True, gc=False):
        """The stream ended inside a record (a dump cut short).  Header fields
        are 0 when even the 12-octet header was incomplete."""

        offset: int
        length: int  # declared body length (0 if unknown)
        data: bytes  # what was there

    # Every record class MrtReader yields.
    RECORD_TYPES = (
        TableDump,
        PeerIndexTable,
        RibRecord,
        Bgp4mpStateChange,
        Bgp4mpMessage,
        Bgp4mpEntry,
        UnknownRecord,
        CorruptRecord,
        TruncatedRecord,
    )


_DEFINING = _thread.allocate_lock()


def __getattr__(name):
    # PEP 562: the first use of a record class defines them all.
    if name in STRUCT_NAMES:
        with _DEFINING:  # two threads must not make two sets of classes
            if "RECORD_TYPES" not in globals():
                _define()
        return globals()[name]
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


class MrtFormatError(ValueError):
    pass


# ---------------------------------------------------------------- addresses


_PTON = None


def ip_bytes(s):
    """The 4 or 16 octets of an address in text form (the inverse of
    ``fastbgp.mrt.reader.ip_str``)."""
    global _PTON
    if _PTON is None:
        import socket  # on first use: a dump that only reads never needs it

        _PTON = socket.inet_pton, socket.AF_INET, socket.AF_INET6
    pton, af4, af6 = _PTON
    return pton(af6 if ":" in s else af4, s)


def prefix_bytes(prefix):
    """'addr/len' -> (afi, address bytes (4 or 16), length)."""
    addr, _, plen = prefix.partition("/")
    b = ip_bytes(addr)
    return (AFI_IPV6 if len(b) == 16 else AFI_IPV4), b, int(plen)

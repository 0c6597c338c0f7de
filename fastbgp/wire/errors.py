"""BGP errors: every protocol error carries the NOTIFICATION it maps to and the
RFC 7606 action a receiver takes.  Both codec implementations raise these."""

# RFC 4271 §4.5 error codes.
ERR_HEADER = 1
ERR_OPEN = 2
ERR_UPDATE = 3
ERR_HOLD_TIMER = 4
ERR_FSM = 5
ERR_CEASE = 6
ERR_ROUTE_REFRESH = 7  # RFC 7313 §5

# RFC 4271 §6.1 message header error subcodes.
HDR_NOT_SYNCHRONIZED = 1
HDR_BAD_LENGTH = 2
HDR_BAD_TYPE = 3

# RFC 4271 §6.2 OPEN message error subcodes (+ RFC 5492, RFC 9234).
OPEN_UNSUPPORTED_VERSION = 1
OPEN_BAD_PEER_AS = 2
OPEN_BAD_BGP_ID = 3
OPEN_UNSUPPORTED_OPT_PARAM = 4
OPEN_UNACCEPTABLE_HOLD_TIME = 6
OPEN_UNSUPPORTED_CAPABILITY = 7
OPEN_ROLE_MISMATCH = 11

# RFC 4271 §6.3 UPDATE message error subcodes.
UPD_MALFORMED_ATTR_LIST = 1
UPD_UNRECOGNIZED_WELL_KNOWN = 2
UPD_MISSING_WELL_KNOWN = 3
UPD_ATTR_FLAGS = 4
UPD_ATTR_LENGTH = 5
UPD_INVALID_ORIGIN = 6
UPD_INVALID_NEXT_HOP = 8
UPD_OPTIONAL_ATTR = 9
UPD_INVALID_NETWORK = 10
UPD_MALFORMED_AS_PATH = 11

# RFC 4271 §6.6 / RFC 6608 FSM errors.
FSM_UNSPECIFIED = 0
FSM_OPENSENT = 1
FSM_OPENCONFIRM = 2
FSM_ESTABLISHED = 3

# RFC 4486 Cease subcodes.
CEASE_MAX_PREFIXES = 1
CEASE_ADMIN_SHUTDOWN = 2
CEASE_PEER_DECONFIGURED = 3
CEASE_ADMIN_RESET = 4
CEASE_CONNECTION_REJECTED = 5
CEASE_OTHER_CONFIG_CHANGE = 6
CEASE_COLLISION = 7
CEASE_OUT_OF_RESOURCES = 8
CEASE_HARD_RESET = 9  # RFC 8538

# RFC 7313 §5 ROUTE-REFRESH error subcode.
RR_INVALID_LENGTH = 1

# RFC 7606 §2 actions, strongest first.  The codec picks the action for each
# error; when several errors are found in one UPDATE the strongest wins (§3 h).
ACTION_NONE = 0
ACTION_ATTRIBUTE_DISCARD = 1
ACTION_TREAT_AS_WITHDRAW = 2
ACTION_AFISAFI_DISABLE = 3
ACTION_SESSION_RESET = 4
ACTION_NAMES = {
    ACTION_NONE: "none",
    ACTION_ATTRIBUTE_DISCARD: "attribute-discard",
    ACTION_TREAT_AS_WITHDRAW: "treat-as-withdraw",
    ACTION_AFISAFI_DISABLE: "afisafi-disable",
    ACTION_SESSION_RESET: "session-reset",
}

ERROR_NAMES = {
    ERR_HEADER: "Message Header Error",
    ERR_OPEN: "OPEN Message Error",
    ERR_UPDATE: "UPDATE Message Error",
    ERR_HOLD_TIMER: "Hold Timer Expired",
    ERR_FSM: "Finite State Machine Error",
    ERR_CEASE: "Cease",
    ERR_ROUTE_REFRESH: "ROUTE-REFRESH Message Error",
}


class BGPError(Exception):
    """A protocol error: the NOTIFICATION (code, subcode, data) to send, the
    RFC 7606 action to take, and a human explanation.

    ``action`` is SESSION_RESET for every header/OPEN error; UPDATE errors
    carry the RFC 7606 action chosen for the failing attribute.
    """

    __slots__ = ("code", "subcode", "data", "action", "reason", "attr_type")

    def __init__(self, code, subcode, data=b"", reason="", action=ACTION_SESSION_RESET, attr_type=0):
        self.code = code
        self.subcode = subcode
        self.data = bytes(data)
        self.action = action
        self.reason = reason
        self.attr_type = attr_type
        super().__init__(code, subcode, self.data, reason, action)

    def __str__(self):
        name = ERROR_NAMES.get(self.code, "code %d" % self.code)
        return "%s (%d/%d, %s): %s" % (
            name,
            self.code,
            self.subcode,
            ACTION_NAMES.get(self.action, str(self.action)),
            self.reason,
        )

    def __repr__(self):
        return "BGPError(%d, %d, %r, %r, action=%d)" % (
            self.code,
            self.subcode,
            self.data,
            self.reason,
            self.action,
        )

    def __eq__(self, other):
        if not isinstance(other, BGPError):
            return NotImplemented
        return (self.code, self.subcode, self.data, self.action, self.attr_type) == (
            other.code,
            other.subcode,
            other.data,
            other.action,
            other.attr_type,
        )

    def __hash__(self):
        return hash((self.code, self.subcode, self.data, self.action))

    def __reduce__(self):
        return (
            BGPError,
            (self.code, self.subcode, self.data, self.reason, self.action, self.attr_type),
        )

    @property
    def notification(self):
        """(code, subcode, data) to put in the NOTIFICATION."""
        return (self.code, self.subcode, self.data)

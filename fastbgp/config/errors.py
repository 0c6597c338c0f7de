"""Errors that name the offending field: the configuration's
:class:`ConfigError`, :class:`FieldError` for validators, and
:func:`explain`, which turns a ``msgspec.ValidationError`` into
``(field path, problem)`` in the input's own terms.

msgspec (0.23 and later as of this writing) gives a ValidationError no
structured location: the path exists only inside its message, as
"Expected `int`, got `str` - at `$.neighbors[0].peer-as`".  :func:`explain`
is the one place that reads that text; the configuration loader and the
HTTP API both call it.  What the input type says is read from
``msgspec.inspect`` (so "expected int >= 1 and <= 4294967295" comes from the
type's own constraints, or from a ``Meta(description=...)``), and errors
raised by a Struct's ``__post_init__`` as :class:`FieldError` keep their
field, since msgspec chains the original exception.
"""

import difflib
import functools
import json
import re

import msgspec

__all__ = ["ConfigError", "FieldError", "explain", "render", "join_path"]


class ConfigError(ValueError):
    """A configuration the daemon will not run with.

    ``errors`` is [(path, problem)], every problem found (decoding stops at
    the first type error; the semantic checks report all of theirs).
    ``str()`` is one ``path: problem`` line per error.  ``source`` is the
    file name, or ``"<string>"``.
    """

    def __init__(self, errors, source="<string>"):
        self.errors = list(errors)
        self.source = source
        super().__init__("\n".join(("%s: %s" % (p, m)) if p else m for p, m in self.errors))

    @property
    def path(self):
        """Field path of the first error."""
        return self.errors[0][0] if self.errors else ""


class FieldError(ValueError):
    """A value a validator refuses.  ``path`` is the field relative to the
    Struct being validated, as parts (``("communities", 2)``), ``problem``
    what is wrong.  Raised from ``__post_init__``, it reaches
    :func:`explain` chained to msgspec's ValidationError."""

    def __init__(self, path, problem: str):
        self.path = tuple(path)
        self.problem = problem
        super().__init__("%s: %s" % (join_path(self.path), problem) if self.path else problem)


def join_path(parts) -> str:
    """["neighbors", 2, "peer-as"] -> "neighbors[2].peer-as"."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += "[%d]" % p
        else:
            out += ("." if out else "") + p
    return out


def render(value) -> str:
    """A value as the user wrote it, for "got ..." in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, dict):
        return "a table"
    return "a %s" % type(value).__name__


# ------------------------------------------------------ reading msgspec's text

# "<message> - at `$<path>`", or "- at `key` in `$<path>`" for a dict key.
_MSGSPEC_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?:(?P<key>key)` in `)?\$(?P<path>[^`]*)`)?$", re.S)
_PATH_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+|\.\.\.)\]")
_MISSING = object()


@functools.lru_cache(maxsize=None)
def _type_info(typ):
    return msgspec.inspect.type_info(typ)


def _split_path(path):
    return [(int(i) if i.isdigit() else i) if i else k for k, i in _PATH_PART.findall(path)]


def _lookup(raw, parts):
    for p in parts:
        try:
            raw = raw[p]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return raw


def _bare(t):
    """The type under ``Meta(description=...)`` and the like."""
    while isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    return t


def _walk(t, parts):
    """The msgspec.inspect type at ``parts`` below ``t`` (None if lost)."""
    mi = msgspec.inspect
    for p in parts:
        t = _bare(t)
        if isinstance(t, mi.UnionType):
            cands = [_walk(m, [p]) for m in t.types]
            cands = [c for c in cands if c is not None]
            if not cands:
                return None
            t = cands[0]
            continue
        if isinstance(t, mi.StructType) and isinstance(p, str):
            t = next((f.type for f in t.fields if f.encode_name == p), None)
        elif isinstance(t, mi.ListType) and isinstance(p, int):
            t = t.item_type
        elif isinstance(t, mi.DictType) and isinstance(p, str):
            t = t.value_type
        else:
            return None
        if t is None:
            return None
    return t


def _fill_dict_keys(parts, raw, root):
    """msgspec writes a dict value's key as "[...]"; find the key whose value
    is the invalid one by re-validating each value of the raw table."""
    out = []
    t = root
    for p in parts:
        if p == "...":
            table = _lookup(raw, out)
            vt = _bare(t.value_type) if isinstance(_bare(t), msgspec.inspect.DictType) else None
            key = None
            if isinstance(table, dict):
                for k, v in table.items():
                    if isinstance(vt, msgspec.inspect.StructType):
                        try:
                            msgspec.convert(v, vt.cls)
                            continue
                        except msgspec.ValidationError:
                            pass
                    key = k
                    break
            p = key if key is not None else "*"
        out.append(p)
        t = _walk(t, [p]) if t is not None else None
    return out


def _describe(t):
    mi = msgspec.inspect
    if isinstance(t, mi.Metadata):
        described = (t.extra_json_schema or {}).get("description")
        return described if described else _describe(t.type)
    if isinstance(t, mi.UnionType):
        parts = [_describe(m) for m in t.types if not isinstance(m, mi.NoneType)]
        return " or ".join(parts)
    if isinstance(t, mi.IntType):
        c = []
        if t.ge is not None:
            c.append(">= %d" % t.ge)
        if t.gt is not None:
            c.append("> %d" % t.gt)
        if t.le is not None:
            c.append("<= %d" % t.le)
        if t.lt is not None:
            c.append("< %d" % t.lt)
        return "int" + (" " + " and ".join(c) if c else "")
    if isinstance(t, mi.StrType):
        if t.max_length is not None and t.min_length:
            return "string of %d to %d characters" % (t.min_length, t.max_length)
        if t.max_length is not None:
            return "string of at most %d characters" % t.max_length
        if t.min_length:
            return "non-empty string"
        return "string"
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(json.dumps(v) for v in t.values)
    if isinstance(t, mi.BoolType):
        return "bool (true/false)"
    if isinstance(t, mi.FloatType):
        return "float"
    if isinstance(t, mi.ListType):
        return "array"
    if isinstance(t, (mi.DictType, mi.StructType)):
        return "table"
    return type(t).__name__


def explain(exc: msgspec.ValidationError, typ, raw=_MISSING):
    """``exc`` from decoding ``raw`` (the undecoded document: dicts, lists,
    scalars) as ``typ`` -> (field path, problem), e.g.
    ("neighbors[2].peer-as", 'expected int >= 1 and <= 4294967295, got "x"').
    Paths use the input's field names; without ``raw`` the "got" part and
    dict keys are unknown."""
    m = _MSGSPEC_AT.match(str(exc))
    msg, parts = m.group("msg"), _split_path(m.group("path") or "")
    root = _type_info(typ)
    if "..." in parts:
        parts = _fill_dict_keys(parts, raw, root)
    cause = exc.__cause__
    if isinstance(cause, FieldError):
        return join_path(parts + list(cause.path)), cause.problem
    t = _walk(root, parts)
    if m.group("key"):
        kt = _bare(t).key_type if isinstance(_bare(t), msgspec.inspect.DictType) else None
        bad = re.search(r"'(.*)'", msg)
        expected = _describe(kt) if kt is not None else "a valid key"
        return join_path(parts), "invalid key %s: expected %s" % (json.dumps(bad.group(1)) if bad else "", expected)
    unknown = re.match(r"Object contains unknown field `(.*)`", msg)
    if unknown:
        st = _bare(t)
        known = [f.encode_name for f in st.fields] if isinstance(st, msgspec.inspect.StructType) else []
        hint = difflib.get_close_matches(unknown.group(1), known, n=1)
        problem = "unknown field" + (" (did you mean %s?)" % json.dumps(hint[0]) if hint else "")
        return join_path(parts + [unknown.group(1)]), problem
    required = re.match(r"Object missing required field `(.*)`", msg)
    if required:
        return join_path(parts + [required.group(1)]), "required field missing"
    if msg.startswith("Expected") or msg.startswith("Invalid enum value"):
        got = _lookup(raw, parts)
        expected = _describe(t) if t is not None else msg.replace("`", "")
        return join_path(parts), "expected %s, got %s" % (expected, render(got) if got is not _MISSING else "?")
    msg = msg.replace("`", "")
    return join_path(parts), msg[:1].lower() + msg[1:]

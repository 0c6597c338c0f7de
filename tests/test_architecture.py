"""The layout rules, checked on the source: which sub-package may import
which (data flows down the tree, nothing imports upwards), no private name
imported from another module, no class over 600 lines, no function over 120.

The import rules are the ones each sub-package's ``__init__`` docstring
states; a change to one must change both."""

import ast
import pathlib
import re

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "fastbgp"

# Sub-package (or top-level module) -> the fastbgp layers it may import.
ALLOWED = {
    "implementation": set(),
    # heap: malloc_trim after a burst (the RTR client's full syncs, the daemon's imports).
    "heap": set(),
    "wire": {"implementation"},
    "config": {"wire"},
    "session": {"wire"},
    # RPKI: RTR client, VRP/ASPA tables and origin/path validation; the RIB keeps
    # one validation state per path and asks rpki/ for it, so rpki sits below rib.
    "rpki": {"wire", "config", "implementation", "heap"},
    "rib": {"wire", "config", "implementation", "rpki"},
    "mrt": {"wire", "implementation"},
    "control": {"wire", "config"},
    # BMP (RFC 7854) client: fed by the daemon through observers, encodes with wire/.
    "bmp": {"wire", "config", "session", "rib", "rpki"},
    # implementation: the import lane's compiled step or its twin (daemon/lanestep.py).
    "daemon": {"wire", "config", "session", "rib", "rpki", "mrt", "control", "bmp", "implementation", "heap"},
    "loadtest": {"wire", "session", "config", "mrt", "implementation"},
    "testing": {"wire", "config", "session", "rib", "rpki", "mrt", "control", "bmp", "daemon", "loadtest",
                "implementation"},
    "cli": {"wire", "config", "session", "rib", "rpki", "mrt", "control", "bmp", "daemon", "loadtest",
            "implementation"},
    "__main__": {"cli"},
    "__init__": set(),
}

MAX_CLASS = 600
MAX_FUNCTION = 120


def _layer(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _sources(*suffixes):
    return sorted(p for s in suffixes for p in PKG.rglob("*" + s) if "build" not in p.parts)


def _imports(tree):
    """(module, names, lineno) of every fastbgp import, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "fastbgp" or node.module.startswith("fastbgp."):
                yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("fastbgp."):
                    yield a.name, [], node.lineno


def _target_layers(module, names):
    parts = module.split(".")
    if len(parts) > 1:
        return {parts[1]}
    return set(names)  # from fastbgp import wire, session


PY = _sources(".py")


@pytest.mark.parametrize("path", PY, ids=lambda p: str(p.relative_to(PKG)))
def test_no_upward_imports(path):
    layer = _layer(path)
    allowed = ALLOWED[layer] | {layer}
    bad = []
    for module, names, line in _imports(ast.parse(path.read_text())):
        for target in _target_layers(module, names) - allowed:
            bad.append("line %d imports %s (layer %r may import %s)" % (line, module, layer, sorted(ALLOWED[layer])))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", PY, ids=lambda p: str(p.relative_to(PKG)))
def test_no_private_names_across_modules(path):
    own = "fastbgp." + ".".join(path.relative_to(PKG).with_suffix("").parts)
    bad = []
    for module, names, line in _imports(ast.parse(path.read_text())):
        if module == own:
            continue
        for name in names:
            if name.startswith("_") and not name.startswith("__"):
                bad.append("line %d: from %s import %s" % (line, module, name))
        tail = module.split(".")[-1]
        if tail.startswith("_") and module.rsplit(".", 1)[0] != own.rsplit(".", 1)[0]:
            bad.append("line %d: imports the private module %s from another package" % (line, module))
    assert not bad, "\n".join(bad)


def _py_units(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            yield "class", node.name, node.lineno, node.end_lineno - node.lineno + 1
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield "function", node.name, node.lineno, node.end_lineno - node.lineno + 1


_PYX_DEF = re.compile(r"^(?P<ind>[ ]*)(?:(?P<cls>cdef class|class)\s+(?P<cname>\w+)|"
                      r"(?:def|cpdef|cdef|async def)\s+(?:inline\s+)?(?:[\w\[\]*]+\s+)*?(?P<fname>\w+)\s*\()")


def _pyx_units(text):
    """Classes and functions of a Cython file, by indentation (ast cannot
    read it): a unit ends where a non-blank, non-comment line comes back to
    its indentation or less."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = _PYX_DEF.match(line)
        if not m or line.lstrip().startswith("cdef extern"):
            continue
        ind = len(m.group("ind"))
        end = len(lines)
        for j in range(i + 1, len(lines)):
            s = lines[j]
            if s.strip() and not s.lstrip().startswith("#") and len(s) - len(s.lstrip()) <= ind:
                end = j
                break
        while end > i + 1 and not lines[end - 1].strip():
            end -= 1
        kind = "class" if m.group("cls") else "function"
        yield kind, m.group("cname") or m.group("fname"), i + 1, end - i


@pytest.mark.parametrize("path", _sources(".py", ".pyx"), ids=lambda p: str(p.relative_to(PKG)))
def test_unit_sizes(path):
    text = path.read_text()
    units = _py_units(ast.parse(text)) if path.suffix == ".py" else _pyx_units(text)
    bad = []
    for kind, name, line, length in units:
        limit = MAX_CLASS if kind == "class" else MAX_FUNCTION
        if length > limit:
            bad.append("%s %s (line %d) has %d lines; the limit is %d" % (kind, name, line, length, limit))
    assert not bad, "\n".join(bad)


def test_every_subpackage_says_what_it_owns_and_may_import():
    for init in sorted(PKG.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc or "may import" in doc, "%s: the docstring must say what it may import" % init
        assert len(doc) > 80, "%s: the docstring must say what the package owns" % init

"""Choosing between a compiled module and its pure-Python twin, the same way
for every pair (the codec, the RIB, the load generator): the compiled one unless it is not built
or FASTBGP_NO_EXTENSIONS is set."""

import importlib
import os

NO_EXTENSIONS = bool(os.environ.get("FASTBGP_NO_EXTENSIONS"))


def loader(package, compiled, twin, what):
    """A ``load(name)`` returning the implementation module called ``name``
    ("cython" or "python") of ``package``."""

    def load(name):
        if name == "cython":
            return importlib.import_module(compiled, package)
        if name == "python":
            return importlib.import_module(twin, package)
        raise ValueError("unknown %s implementation %r" % (what, name))

    return load


def select(load):
    """The compiled implementation when allowed and built, else the twin."""
    if not NO_EXTENSIONS:
        try:
            return load("cython")
        except ImportError:
            pass
    return load("python")


def export(namespace, compiled, twin, what, api):
    """Fill a selector module's ``namespace`` (its ``globals()``): ``load``
    and ``NO_EXTENSIONS`` (the contract fastbgp.testing.plugin relies on) and
    the names ``api`` taken from the selected implementation, which it
    returns."""
    load = loader(namespace["__package__"], compiled, twin, what)
    impl = select(load)
    namespace["NO_EXTENSIONS"] = NO_EXTENSIONS
    namespace["load"] = load
    for name in api:
        namespace[name] = getattr(impl, name)
    return impl

"""Sockets for tests: the one free-port probe."""

import socket


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on at ``host`` right now.

    For listeners that need a fixed port in a config file; the window
    between closing this probe and the real bind is harmless on a test
    machine."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]

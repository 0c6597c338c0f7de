"""Coverage-guided fuzzing (atheris) of the codec twins and the MRT reader.

``harnesses`` holds the targets (plain functions of one bytes input, usable
without atheris), ``run`` the libFuzzer driver:

    python -m tests.fuzz.run codec -max_total_time=3600
    python -m tests.fuzz.run mrt -max_total_time=3600

Inputs that crash are written to tests/fuzz/crashers/<harness>/ and replayed
against both codec implementations by tests/test_fuzz.py.
"""

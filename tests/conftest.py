"""For the whole suite: the signal dispositions a terminal or a CI runner gives a process.

A shell that runs the suite as a background job ignores SIGINT and SIGQUIT in it, and every process
the tests start would inherit that: a `ctl tail -f` would not end on the ^C a test sends it.
"""

from __future__ import annotations

import signal

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)

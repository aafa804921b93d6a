"""SigchldWatch: a SIGCHLD handler installed by user code is reported once, by name."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator

import pytest

from asyncsup.signals import SigchldWatch


def on_sigchld(signum: int, frame: object) -> None:
    """Stands for user code's handler."""


@pytest.fixture
def sigchld() -> Iterator[None]:
    before = signal.getsignal(signal.SIGCHLD)
    yield
    signal.signal(signal.SIGCHLD, before)


def test_a_new_handler_is_reported_once_and_again_after_a_change(
    sigchld: None, caplog: pytest.LogCaptureFixture
) -> None:
    expected = signal.getsignal(signal.SIGCHLD)
    watch = SigchldWatch()
    watch.check()
    assert caplog.records == []

    signal.signal(signal.SIGCHLD, on_sigchld)
    watch.check()
    watch.check()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"SIGCHLD handler {__name__}.on_sigchld was installed" in errors[0].getMessage()

    signal.signal(signal.SIGCHLD, expected)  # back to what it expects: nothing to say
    watch.check()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    watch.check()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "SIGCHLD handler SIG_IGN was installed" in errors[1]

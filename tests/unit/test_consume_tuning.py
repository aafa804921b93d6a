"""What `asyncsup consume` sets for its whole process before it consumes."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from asyncsup.consumer.commands import GC_YOUNG_THRESHOLD, SWITCH_INTERVAL, tune_process_for_consuming


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    yield
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


def test_young_objects_are_collected_less_often_and_the_gil_handed_over_promptly() -> None:
    gc.set_threshold(700, 10, 10)
    sys.setswitchinterval(0.005)
    tune_process_for_consuming()
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)


def test_settings_already_stricter_or_a_collector_turned_off_are_kept() -> None:
    gc.set_threshold(0, 10, 10)  # someone turned the collector off: it stays off
    sys.setswitchinterval(1e-6)
    tune_process_for_consuming()
    assert gc.get_threshold() == (0, 10, 10)
    assert sys.getswitchinterval() == pytest.approx(1e-6)
    gc.set_threshold(50_000, 10, 10)
    tune_process_for_consuming()
    assert gc.get_threshold()[0] == 50_000

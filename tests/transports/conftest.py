"""Fixtures for the transport tests: one factory per transport, so one suite runs over all of them.

A new transport joins by adding its name to TRANSPORTS and a branch to ``Opener.url`` (in
transport_rig.py); it is not done until the contract suite passes for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from transport_rig import TRANSPORTS, Opener

from asyncsup.transports.base import Transport


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture(params=TRANSPORTS)
async def opener(
    request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: Any
) -> AsyncIterator[Opener]:
    """A factory of transports of one kind sharing one store: ``opener("jobs")``."""
    opening = Opener(request.param, tmp_path)
    yield opening
    await opening.close_all()


@pytest.fixture
async def transport(opener: Opener) -> Transport:
    """The "default" queue of the transport under test."""
    return opener()

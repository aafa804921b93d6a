"""Declaring versions (@handler(version=), __version__), @upcaster, and senders stamping the version."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from asyncsup.consumer.envelope import decode, new_envelope
from asyncsup.consumer.handlers import HandlerRegistry, handler
from asyncsup.consumer.send import message_bytes
from asyncsup.consumer.versions import upcaster
from asyncsup.errors import ConfigError, NewerVersion, UpcasterFailed, VersionGap


@dataclass
class Thumb:
    __version__ = 2
    image_id: int
    edge: int


@handler
async def thumb(msg: Thumb) -> None: ...


@handler("Purge", version=3)
def purge(body: dict[str, Any]) -> None: ...


@upcaster("Thumb", from_version=1)
def thumb_v1(body: dict[str, Any]) -> dict[str, Any]:
    return {"image_id": body["image_id"], "edge": body.pop("size", 128)}


def test_version_comes_from_the_decorator_or_the_body_class() -> None:
    registry = HandlerRegistry()
    assert registry.add(thumb).version == 2  # Thumb.__version__
    assert registry.add(purge).version == 3  # @handler(version=3)
    assert "Purge version 3" in repr(registry.get("Purge"))


def test_a_handler_without_a_version_is_at_version_1() -> None:
    @handler("Plain")
    async def plain(body: dict[str, Any]) -> None: ...

    assert HandlerRegistry().add(plain).version == 1


def test_decorator_and_class_must_agree() -> None:
    @handler(version=5)
    async def other(msg: Thumb) -> None: ...

    with pytest.raises(ConfigError, match="declares version 5 but its body type Thumb has __version__ = 2"):
        HandlerRegistry().add(other)


@pytest.mark.parametrize("bad", [0, -1, "2", 1.5, True])
def test_versions_are_integers_from_1(bad: Any) -> None:
    with pytest.raises(TypeError, match="must be an integer >= 1"):
        handler("X", version=bad)
    with pytest.raises(TypeError, match="must be an integer >= 1"):
        upcaster("X", from_version=bad)


def test_an_async_upcaster_is_refused_at_import() -> None:
    with pytest.raises(TypeError, match="plain function"):

        @upcaster("X", from_version=1)
        async def slow(body: dict[str, Any]) -> dict[str, Any]:
            return body


def test_decode_body_runs_the_chain_and_leaves_the_envelope_alone() -> None:
    registry = HandlerRegistry()
    registry.add(thumb)
    registry.add_upcaster(thumb_v1)
    old = new_envelope("Thumb", {"image_id": 1, "size": 64}, version=1)
    assert registry.decode_body(old) == Thumb(1, 64)
    assert old.body == {"image_id": 1, "size": 64}  # thumb_v1 popped "size" from a copy


def test_gap_newer_and_a_raising_upcaster_say_which_versions() -> None:
    registry = HandlerRegistry()
    registry.add(purge)  # version 3, no upcasters
    with pytest.raises(VersionGap, match=r"Purge version 1 cannot be upgraded to this consumer's version 3: "
                                         r"no upcaster from version 1 \(upcasters: none\)"):  # fmt: skip
        registry.decode_body(new_envelope("Purge", {}, version=1))
    with pytest.raises(NewerVersion, match="Purge version 4 is newer than this consumer's 3"):
        registry.decode_body(new_envelope("Purge", {}, version=4))

    registry.add_upcaster(lambda body: body["missing"], "Purge", 2)
    with pytest.raises(UpcasterFailed, match=r"\(Purge version 2 -> 3\) raised KeyError: 'missing'") as info:
        registry.decode_body(new_envelope("Purge", {}, version=2))
    assert isinstance(info.value.error, KeyError)


def test_two_upcasters_for_one_step_and_an_upcaster_past_the_handler_are_config_errors() -> None:
    registry = HandlerRegistry(origin=("app.toml", "consumers.main.handlers"))
    registry.add(thumb)
    registry.add_upcaster(thumb_v1)
    registry.add_upcaster(thumb_v1)  # the same function again (a module imported twice): fine
    with pytest.raises(ConfigError, match=r"two upcasters for Thumb version 1: .*thumb_v1 and .*<lambda>"):
        registry.add_upcaster(lambda body: body, "Thumb", 1)
    with pytest.raises(ConfigError, match=r"upgrades Thumb to version 3, but its handler .* is at version 2"):
        registry.add_upcaster(lambda body: body, "Thumb", 2)


def test_from_modules_picks_up_upcasters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "vmod_a.py").write_text(textwrap.dedent("""
        from asyncsup import handler, upcaster

        @handler("Note", version=2)
        async def note(body: dict) -> None: ...

        @upcaster("Note", from_version=1)
        def note_v1(body: dict) -> dict:
            return {"text": body["txt"]}
    """))
    (tmp_path / "vmod_b.py").write_text(textwrap.dedent("""
        from asyncsup import upcaster

        @upcaster("Note", from_version=1)
        def again(body: dict) -> dict:
            return body
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry = HandlerRegistry.from_modules(["vmod_a"])
        assert registry.decode_body(new_envelope("Note", {"txt": "hi"}, version=1)) == {"text": "hi"}
        expected = "two upcasters for Note version 1: vmod_a.note_v1 and vmod_b.again"
        with pytest.raises(ConfigError, match=re.escape(expected)):
            HandlerRegistry.from_modules(["vmod_a", "vmod_b"])
    finally:
        for name in ("vmod_a", "vmod_b"):
            sys.modules.pop(name, None)


def test_senders_stamp_the_class_version_or_the_one_given() -> None:
    assert decode(message_bytes(Thumb(1, 64))).version == 2
    assert decode(message_bytes({"x": 1}, type="Purge")).version == 1
    assert decode(message_bytes({"x": 1}, type="Purge", version=3)).version == 3
    assert json.loads(message_bytes(Thumb(1, 64)))["body"] == {"image_id": 1, "edge": 64}
    with pytest.raises(TypeError, match="version must be an integer >= 1"):
        message_bytes({"x": 1}, type="Purge", version=0)


def test_the_check_report_keeps_the_first_reasons_and_a_few_example_ids() -> None:
    from asyncsup.consumer.check import MAX_EXAMPLES, MAX_REASONS, TypeReport

    report = TypeReport()
    report.add("ok-1", 2, None)
    for n in range(10):
        report.add(f"same-{n}", 1, "no upcaster from version 1")
    for n in range(MAX_REASONS + 2):
        report.add(f"other-{n}", 2, f"body does not fit: field {n}")
    out = report.as_json("Resize")
    failed = 10 + MAX_REASONS + 2
    assert (out["checked"], out["ok"], out["would_fail"]) == (1 + failed, 1, failed)
    assert out["versions"] == {"1": 10, "2": 1 + MAX_REASONS + 2}
    first = out["reasons"][0]
    assert first["count"] == 10 and first["examples"] == [f"same-{n}" for n in range(MAX_EXAMPLES)]
    assert len(out["reasons"]) == MAX_REASONS and out["other_reasons"] == 3

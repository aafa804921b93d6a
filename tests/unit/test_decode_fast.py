"""With msgspec, most bodies decode straight from the message's bytes (HandlerRegistry.decode_fast).

What a handler gets must not depend on that: every body that takes the fast path comes out equal,
with the same types (1.0 is not 1), as on the checked path; every body the checks refuse is refused
with the same error; anything else is left to the checked path.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any, Literal, Optional, TypedDict

import pytest

from asyncsup.consumer.bodies import json_decoder_for
from asyncsup.consumer.envelope import Envelope, decode, encode
from asyncsup.consumer.handlers import HandlerRegistry

msgspec = pytest.importorskip("msgspec", reason="the fast path exists only with msgspec installed")


@dataclasses.dataclass
class Resize:
    image_id: int
    width: int = 800
    ratio: float = 1.0
    name: str = ""
    crop: bool = False
    tags: list[str] = dataclasses.field(default_factory=list)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    scores: Mapping[str, int] = dataclasses.field(default_factory=dict)
    note: Optional[str] = None  # noqa: UP045 - the old spelling must work too
    alt: str | None = None
    mode: Literal["fit", "fill", 3] = "fit"
    extra: Any = None
    pair: tuple = ()  # type: ignore[type-arg]
    labels: frozenset = frozenset()  # type: ignore[type-arg]
    weight: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Frozen:
    a: int
    b: list[list[str | None]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Checked:
    n: int
    calls: Any = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        CALLS.append(self.n)
        if self.n < 0:
            raise ValueError("n must not be negative")


CALLS: list[int] = []

BODIES: list[Any] = [
    {"image_id": 7},
    {"image_id": 7, "width": 10, "ratio": 2, "name": "x", "crop": True},
    {"image_id": 7, "ratio": 2.5, "weight": 3, "pair": [1, [2]], "labels": ["a", "b"]},
    {"image_id": 7, "tags": ["a", "b"], "meta": {"k": [1, 2.0, None]}, "scores": {"a": 1}},
    {"image_id": 7, "note": None, "alt": "é", "mode": "fill", "extra": {"x": [1]}},
    {"image_id": 7, "mode": 3},
    # what the checks refuse, or what msgspec refuses and the (shallow) checks accept
    {"image_id": "7"},
    {"image_id": True},
    {"image_id": 7.0},
    {"image_id": 2**70},
    {"width": 1},
    {"image_id": 7, "colour": "red"},
    {"image_id": 7, "tags": [1, 2]},
    {"image_id": 7, "scores": {"a": "b"}},
    {"image_id": 7, "mode": "stretch"},
    {"image_id": 7, "mode": True},
    {"image_id": 7, "crop": 1},
    {"image_id": 7, "ratio": "1"},
    {"image_id": 7, "labels": [[1]]},
    [7],
    "7",
    None,
]


def outcome(call: Any) -> tuple[str, str]:
    """What a handler would see (repr shows types: 1.0 vs 1, tuple vs list) or the error."""
    try:
        value = call()
    except Exception as exc:
        return "error", f"{type(exc).__name__}: {exc}"
    return "ok", f"{type(value).__name__} {value!r}"


def both_paths(registry: HandlerRegistry, data: bytes) -> tuple[tuple[str, str], tuple[str, str], bool]:
    checked = outcome(lambda: registry.decode_body(decode(data)))
    fast = registry.decode_fast(data)
    if fast is None:  # the worker then takes the checked path: the same outcome by construction
        return checked, checked, False
    _, spec, parts = fast
    return checked, outcome(lambda: spec.build(parts)), True


def envelope_bytes(body: Any, message_type: str = "Resize", version: int = 1) -> bytes:
    return encode(Envelope("m1", message_type, body, version, {"attempt": 1}))


@pytest.mark.parametrize("body", BODIES, ids=[repr(b)[:40] for b in BODIES])
def test_a_body_comes_out_the_same_on_both_paths(body: Any) -> None:
    registry = HandlerRegistry()

    async def resize(msg: Resize) -> None: ...

    registry.add(resize)
    checked, fast, _ = both_paths(registry, envelope_bytes(body))
    assert fast == checked


def test_well_formed_bodies_do_take_the_fast_path() -> None:
    """Else the test above would pass with the fast path switched off."""
    registry = HandlerRegistry()

    async def resize(msg: Resize) -> None: ...

    async def frozen(msg: Frozen) -> None: ...

    registry.add(resize)
    registry.add(frozen)
    for body in BODIES[:6]:
        checked, fast, took = both_paths(registry, envelope_bytes(body))
        assert took and checked[0] == "ok" and fast == checked
    nested = {"a": 1, "b": [["x", None], []]}
    checked, fast, took = both_paths(registry, envelope_bytes(nested, "Frozen"))
    assert took and fast == checked == ("ok", "Frozen Frozen(a=1, b=[['x', None], []])")


def test_the_fast_envelope_reads_and_encodes_like_the_checked_one() -> None:
    registry = HandlerRegistry()

    async def resize(msg: Resize) -> None: ...

    registry.add(resize)
    data = envelope_bytes({"image_id": 7, "meta": {"k": [1, "é"]}})
    fast = registry.decode_fast(data)
    assert fast is not None
    envelope = fast[0].envelope()
    checked = decode(data)
    assert envelope == checked and encode(envelope) == encode(checked) == data
    assert envelope.body == {"image_id": 7, "meta": {"k": [1, "é"]}} and envelope.attempt == 1


def test_the_body_class_init_runs_once_and_its_error_is_the_handlers() -> None:
    """__post_init__ runs when the body is built (not while msgspec decodes), once per message."""
    registry = HandlerRegistry()

    async def checked(msg: Checked) -> None: ...

    registry.add(checked)
    CALLS.clear()
    fast = registry.decode_fast(envelope_bytes({"n": -1}, "Checked"))
    assert fast is not None and CALLS == []
    with pytest.raises(ValueError, match="must not be negative"):
        fast[1].build(fast[2])
    assert CALLS == [-1]


@pytest.mark.parametrize(
    "data",
    [
        b'{"id":"m1","type":"Resize","body":{"image_id":7,"name":"\xff"},"headers":{}}',
        b'{"id":"m1","type":"Resize","body":{"image_id":7,"extra":"\\ud800"},"headers":{}}',
        b'{"id":"m1","type":"Resize","body":{"image_id":7,"extra":1e999},"headers":{}}',
    ],
    ids=["invalid UTF-8", "lone surrogate", "number out of range"],
)
def test_bytes_only_skipped_over_are_refused_the_same_way(data: bytes) -> None:
    """msgspec skips a body it does not parse without checking it; the fast path parses it all."""
    registry = HandlerRegistry()

    async def resize(msg: Resize) -> None: ...

    registry.add(resize)
    checked, _, took = both_paths(registry, data)
    assert not took and checked[0] == "error"


def test_other_versions_unknown_types_and_bad_bytes_take_the_checked_path() -> None:
    registry = HandlerRegistry()

    async def resize(msg: Resize) -> None: ...

    registry.add(resize)
    assert registry.decode_fast(envelope_bytes({"image_id": 7}, version=2)) is None  # upcasters
    assert registry.decode_fast(envelope_bytes({"image_id": 7}, "Crop")) is None  # no handler
    assert registry.decode_fast(b'{"id":"m1","type":"Resize","body":{"image_id":7},"headers":{}') is None
    invalid_utf8 = b'{"id":"m1","type":"Resize","body":{"image_id":7,"name":"\xff"},"headers":{}}'
    assert registry.decode_fast(invalid_utf8) is None


@dataclasses.dataclass
class Inner:
    x: int


@dataclasses.dataclass
class WithInitVar:
    a: int
    scale: dataclasses.InitVar[int] = 1


class Own:
    def __init__(self, a: int) -> None:
        self.a = a


Own = dataclasses.dataclass(init=False)(Own)  # type: ignore[misc]


class Typed(TypedDict):
    a: int


def _one_field(tp: Any) -> type:
    return dataclasses.make_dataclass("One", [("v", tp)])


@pytest.mark.parametrize(
    "tp",
    [datetime.datetime, Inner, list[float], dict[int, str], tuple[int, str], set[int],
     int | str, Literal[True], list[tuple[int]], Optional[list[float]]],  # noqa: UP045
    ids=str,
)
def test_fields_msgspec_would_convert_keep_the_checked_path(tp: Any) -> None:
    """A datetime stays the string it is in JSON for the checks; msgspec would parse it, etc."""
    assert json_decoder_for(_one_field(tp)) is None


def test_bodies_that_are_no_plain_dataclass_keep_the_checked_path() -> None:
    for tp in (WithInitVar, Own, Typed, dict, Any):
        assert json_decoder_for(tp) is None, tp


class Point(msgspec.Struct):  # type: ignore[misc,name-defined]
    x: int
    y: int = 0


def test_a_msgspec_struct_decodes_straight_from_json() -> None:
    registry = HandlerRegistry()

    async def point(msg: Point) -> None: ...

    registry.add(point)
    checked, fast, took = both_paths(registry, envelope_bytes({"x": 1}, "Point"))
    assert took and fast == checked == ("ok", "Point Point(x=1, y=0)")
    checked, fast, took = both_paths(registry, envelope_bytes({"x": "1"}, "Point"))
    assert not took and checked[0] == "error"

"""Envelope wire format and typed bodies: round trips and every way decoding can fail."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal, Optional, TypedDict

import pytest

from asyncsup.consumer.bodies import decoder_for, to_json_data, type_name_of
from asyncsup.consumer.envelope import Envelope, decode, encode, new_envelope
from asyncsup.errors import DecodeError


@dataclasses.dataclass
class Size:
    width: int
    height: int = 600


@dataclasses.dataclass
class ResizeImage:
    image_id: int
    width: int = 800
    ratio: float = 1.0
    name: str = ""
    crop: bool = False
    tags: list[str] = dataclasses.field(default_factory=list)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    note: Optional[str] = None  # noqa: UP045 - the old spelling must work too
    alt: str | None = None
    size: Size | None = None
    mode: Literal["fit", "fill"] = "fit"


class Greeting(TypedDict):
    name: str
    times: int


# -- envelope ------------------------------------------------------------------------------------


def test_round_trip_keeps_every_field() -> None:
    env = new_envelope("ResizeImage", {"image_id": 7}, headers={"trace": "abc"})
    back = decode(encode(env))
    assert (back.id, back.type, back.version, back.body) == (env.id, "ResizeImage", 1, {"image_id": 7})
    assert back.headers["attempt"] == 1 and back.headers["trace"] == "abc"
    assert isinstance(back.headers["sent_at"], float)
    assert back.attempt == 1


def test_wire_format_is_plain_json_readable_by_anyone() -> None:
    data = encode(Envelope("id1", "T", {"a": [1, "é"]}, 2, {"attempt": 3}))
    assert json.loads(data) == {
        "id": "id1",
        "type": "T",
        "version": 2,
        "body": {"a": [1, "é"]},
        "headers": {"attempt": 3},
    }


def test_ids_are_unique() -> None:
    assert len({new_envelope("T", None).id for _ in range(1000)}) == 1000


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "not a JSON envelope"),
        (b"", "not a JSON envelope"),
        (b"\xff\xfe\x00garbage", "not a JSON envelope"),
        (b'{"id": "1", "type": "T", "body": "\xc3\x28", "headers": {}}', "not a JSON envelope"),
        (b"[1, 2]", "top level is list"),
        (b'"just a string"', "top level is str"),
        (b'{"type": "T", "body": {}, "headers": {}}', "no 'id' key"),
        (b'{"id": "1", "body": {}, "headers": {}}', "no 'type' key"),
        (b'{"id": "1", "type": "T", "headers": {}}', "no 'body' key"),
        (b'{"id": "1", "type": "T", "body": {}}', "no 'headers' key"),
        (b'{"id": 1, "type": "T", "body": {}, "headers": {}}', "must be non-empty strings"),
        (b'{"id": "1", "type": "", "body": {}, "headers": {}}', "must be non-empty strings"),
        (b'{"id": "1", "type": "T", "version": "2", "body": {}, "headers": {}}', "'version'"),
        (b'{"id": "1", "type": "T", "body": {}, "headers": []}', "'headers' must be an object"),
        (b'{"id": "1", "type": "T", "body": {}, "headers": {}, "x": 1}', "unknown keys: x"),
    ],
)
def test_bad_bytes_are_decode_errors_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"id":"1","type":"T","version":2,"body":{"n":1},"headers":{"attempt":3,"sent_at":1.5}}',
        b'{"id":"","type":"T","body":null,"headers":{}}',  # no version: 1
        b'{"headers":{"a":{"b":[1,"\xc3\xa9"]}},"body":[1,2.5,true],"type":"\xc3\xa9","id":"x"}',
        b'{"id":"1","type":"T","version":100000000000000000000000,"body":1,"headers":{}}',
        b'{"id":"1","type":"T","body":1,"headers":{},"body":2}',  # a repeated key: the last wins
    ],
)
def test_every_decode_path_gives_what_the_stdlib_reads(data: bytes) -> None:
    """With msgspec, decode() takes a typed one-call path first: same envelope as plain JSON."""
    raw = json.loads(data)
    expected = Envelope(raw["id"], raw["type"], raw["body"], raw.get("version", 1), raw["headers"])
    assert decode(data) == expected


def test_garbage_attempt_header_counts_as_first_attempt() -> None:
    for value in ("2", -1, 0, None, 1.5, True):
        assert Envelope("i", "T", None, 1, {"attempt": value}).attempt == 1
    assert Envelope("i", "T", None, 1, {"attempt": 4}).attempt == 4


def test_unencodable_body_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="cannot be encoded"):
        encode(new_envelope("T", {"x": object()}))


def test_lone_surrogates_survive_a_round_trip_or_fail_to_decode() -> None:
    """The stdlib codec accepts lone surrogates (json.loads uses surrogatepass), msgspec does not;
    either way nothing in between may raise: what decodes must encode again."""
    data = '{"id":"1","type":"T","body":"\udcff","headers":{}}'.encode("utf-8", "surrogatepass")
    try:
        env = decode(data)
    except DecodeError:
        return
    assert decode(encode(env)).body == "\udcff"


# -- bodies --------------------------------------------------------------------------------------


def test_dataclass_body_decodes_with_defaults_and_conversions() -> None:
    decode_body = decoder_for(ResizeImage)
    msg = decode_body({"image_id": 7, "ratio": 2, "size": {"width": 3}, "note": None, "mode": "fill"})
    assert msg == ResizeImage(image_id=7, ratio=2.0, size=Size(3), mode="fill")
    assert isinstance(msg.ratio, float)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([1], "expected an object"),
        ({}, "missing required field\\(s\\) 'image_id'"),
        ({"image_id": 1, "colour": "red"}, "unknown field\\(s\\) 'colour'"),
        ({"image_id": "7"}, "image_id: expected an integer, got string '7'"),
        ({"image_id": True}, "image_id: expected an integer, got boolean"),
        ({"image_id": 1.0}, "image_id: expected an integer"),
        ({"image_id": 1, "ratio": "x"}, "ratio: expected a number"),
        ({"image_id": 1, "name": 5}, "name: expected a string"),
        ({"image_id": 1, "crop": 1}, "crop: expected a boolean"),
        ({"image_id": 1, "tags": "a"}, "tags: expected an array"),
        ({"image_id": 1, "meta": []}, "meta: expected an object"),
        ({"image_id": 1, "note": 3}, "note: expected"),
        ({"image_id": 1, "size": {"width": "w"}}, "size: width: expected an integer"),
        ({"image_id": 1, "size": {}}, "size: missing required field"),
        ({"image_id": 1, "mode": "stretch"}, "mode: expected one of 'fit', 'fill'"),
    ],
)
def test_dataclass_body_that_does_not_fit_names_the_field(body: Any, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decoder_for(ResizeImage)(body)


def test_typeddict_body() -> None:
    decode_body = decoder_for(Greeting)
    assert decode_body({"name": "a", "times": 2}) == {"name": "a", "times": 2}
    with pytest.raises(DecodeError, match="times: expected an integer"):
        decode_body({"name": "a", "times": "2"})
    with pytest.raises(DecodeError, match="missing required field"):
        decode_body({"name": "a"})
    with pytest.raises(DecodeError, match="unknown field"):
        decode_body({"name": "a", "times": 1, "x": 0})


def test_dict_and_unannotated_bodies() -> None:
    assert decoder_for(dict)({"a": 1}) == {"a": 1}
    assert decoder_for(dict[str, int])({"a": 1}) == {"a": 1}
    with pytest.raises(DecodeError, match="expected an object"):
        decoder_for(dict)([1])
    assert decoder_for(Any)([1, 2]) == [1, 2]


def test_unsupported_annotation_is_refused_at_registration() -> None:
    with pytest.raises(TypeError, match="cannot decode message bodies into"):
        decoder_for(int)


def test_msgspec_struct_body() -> None:
    msgspec = pytest.importorskip("msgspec")

    class Point(msgspec.Struct):
        x: int
        y: int = 0

    decode_body = decoder_for(Point)
    assert decode_body({"x": 1}) == Point(1, 0)
    with pytest.raises(DecodeError, match="does not fit Point"):
        decode_body({"x": "one"})
    assert to_json_data(Point(1, 2)) == {"x": 1, "y": 2}


def test_pydantic_model_body() -> None:
    pydantic = pytest.importorskip("pydantic")

    class User(pydantic.BaseModel):
        id: int

    assert decoder_for(User)({"id": 1}) == User(id=1)
    with pytest.raises(DecodeError, match="does not fit User"):
        decoder_for(User)({"id": "x"})


def test_to_json_data_and_type_names() -> None:
    msg = ResizeImage(7, size=Size(1, 2), tags=["a"])
    data = to_json_data(msg)
    assert data["size"] == {"width": 1, "height": 2} and data["tags"] == ["a"]
    assert decoder_for(ResizeImage)(data) == msg
    assert type_name_of(msg) == "ResizeImage"
    with pytest.raises(TypeError, match="pass type="):
        type_name_of({"a": 1})

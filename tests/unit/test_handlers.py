"""@handler marks, HandlerRegistry collects: by annotation, by name, duplicates, sync vs async."""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from asyncsup.consumer.handlers import HandlerRegistry, handler
from asyncsup.errors import ConfigError, DecodeError, NoHandler


@dataclass
class ResizeImage:
    image_id: int


@handler
async def resize(msg: ResizeImage) -> None: ...


@handler("DeleteImage")
def delete(body: dict[str, Any]) -> None: ...


def test_type_from_annotation_and_from_name() -> None:
    registry = HandlerRegistry()
    registry.add(resize)
    registry.add(delete)
    assert registry.types() == ["DeleteImage", "ResizeImage"]
    spec = registry.get("ResizeImage")
    assert spec.is_async and spec.func is resize
    assert spec.decode({"image_id": 1}) == ResizeImage(1)
    assert not registry.get("DeleteImage").is_async
    assert "sync, runs in a thread" in repr(registry.get("DeleteImage"))


def test_decorator_registers_nothing_globally() -> None:
    assert len(HandlerRegistry()) == 0
    assert resize.__name__ == "resize"  # the function itself is returned, still callable


def test_unknown_type_is_no_handler_naming_the_known() -> None:
    registry = HandlerRegistry()
    registry.add(resize)
    with pytest.raises(NoHandler, match="no handler for message type 'Nope' \\(known: ResizeImage\\)"):
        registry.get("Nope")


def test_body_decoder_follows_annotation() -> None:
    registry = HandlerRegistry()
    registry.add(resize)
    with pytest.raises(DecodeError):
        registry.get("ResizeImage").decode({"image_id": "x"})


def test_annotation_that_names_no_type_is_refused_at_decoration() -> None:
    with pytest.raises(TypeError, match="does not name a message type"):

        @handler
        async def bad(body: dict[str, Any]) -> None: ...

    with pytest.raises(TypeError, match="first argument"):

        @handler("X")
        async def no_args() -> None: ...

    with pytest.raises(TypeError, match="takes a message type name"):
        handler(3)  # type: ignore[call-overload]


def _write_module(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


@pytest.fixture
def modules(tmp_path: Path) -> Any:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("hmod_")]:
        del sys.modules[name]


def test_from_modules_collects_marked_functions(modules: Path) -> None:
    _write_module(
        modules,
        "hmod_a",
        """
        from dataclasses import dataclass
        from asyncsup import handler

        @dataclass
        class Ping:
            n: int

        @handler
        async def ping(msg: Ping) -> None: ...

        @handler("Pong")
        def pong(body: dict) -> None: ...

        def helper(x): ...
        """,
    )
    registry = HandlerRegistry.from_modules(["hmod_a"])
    assert registry.types() == ["Ping", "Pong"]
    # A second registry is independent: nothing global.
    assert HandlerRegistry.from_modules(["hmod_a"]).types() == ["Ping", "Pong"]


def test_duplicate_handlers_for_a_type_fail_naming_both(modules: Path) -> None:
    _write_module(modules, "hmod_b", "from asyncsup import handler\n@handler('T')\ndef one(b): ...\n")
    _write_module(modules, "hmod_c", "from asyncsup import handler\n@handler('T')\nasync def two(b): ...\n")
    expected = re.escape("two handlers for message type 'T': hmod_b.one and hmod_c.two")
    with pytest.raises(ConfigError, match=expected):
        HandlerRegistry.from_modules(["hmod_b", "hmod_c"], origin=("app.toml", "consumers.main.handlers"))


def test_same_function_imported_twice_is_not_a_duplicate(modules: Path) -> None:
    _write_module(modules, "hmod_d", "from asyncsup import handler\n@handler('T')\ndef one(b): ...\n")
    _write_module(modules, "hmod_e", "from hmod_d import one\n")
    assert HandlerRegistry.from_modules(["hmod_d", "hmod_e"]).types() == ["T"]


def test_missing_module_is_a_config_error_with_the_key_path(modules: Path) -> None:
    expected = re.escape("app.toml: consumers.main.handlers: cannot import handler module")
    with pytest.raises(ConfigError, match=expected):
        HandlerRegistry.from_modules(["hmod_missing"], origin=("app.toml", "consumers.main.handlers"))


def test_string_annotations_resolve_lazily(modules: Path) -> None:
    _write_module(
        modules,
        "hmod_f",
        """
        from __future__ import annotations
        from dataclasses import dataclass
        from asyncsup import handler

        @handler
        async def later(msg: "Later") -> None: ...

        @dataclass
        class Later:
            x: int
        """,
    )
    spec = HandlerRegistry.from_modules(["hmod_f"]).get("Later")
    assert spec.decode({"x": 1}).x == 1


def test_async_callable_object_is_async() -> None:
    class Handler:
        async def __call__(self, body: dict[str, Any]) -> None: ...

    registry = HandlerRegistry()
    assert registry.add(Handler(), "Obj").is_async

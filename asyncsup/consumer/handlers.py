"""@handler marks functions; a HandlerRegistry, built from a consumer's modules, collects them.

The decorator registers nothing anywhere: it only stores a mark on the function, so importing a
module twice, or two consumers with different handler sets in one process, cannot collide. The
registry imports the modules a consumer names (``handlers = ["app.handlers"]``), picks up the marked
functions (and @upcaster functions, see versions.py) and refuses two handlers for one message type
at startup, naming both.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from asyncsup.consumer.bodies import BodyDecoder, decoder_for, identity, json_decoder_for
from asyncsup.consumer.envelope import Envelope, Head, split_fast
from asyncsup.consumer.versions import MARK as UPCASTER_MARK
from asyncsup.consumer.versions import Upcast, Upcasters, check_version, declared_version
from asyncsup.errors import ConfigError, NoHandler

log = logging.getLogger("asyncsup.consumer")

F = TypeVar("F", bound=Callable[..., Any])

MARK = "__asyncsup_handler__"


@dataclass(frozen=True, slots=True)
class HandlerMark:
    """What @handler stores on a function: the message type it handles (None = from annotation)
    and its version (None = the body class's ``__version__``, or 1)."""

    message_type: str | None
    version: int | None = None


@overload
def handler(func: F, /) -> F: ...
@overload
def handler(message_type: str | None = None, /, *, version: int | None = None) -> Callable[[F], F]: ...


def handler(arg: Any = None, /, *, version: int | None = None) -> Any:
    """Mark a function as the handler of a message type.

    ``@handler`` takes the type name from the first parameter's annotation (a dataclass named
    ResizeImage handles "ResizeImage" messages); ``@handler("DeleteImage")`` names it explicitly.
    Async functions run on the loop; plain functions run in a worker thread. A handler with a
    second parameter also gets the message's Envelope (id, attempt, headers).
    ``version=N`` is the body's current version (default: the body class's ``__version__``, or 1);
    older messages are upgraded by @upcaster functions first (versions.py).
    """
    if version is not None:
        check_version(version, "@handler version")
    if callable(arg):
        return _mark(arg, None, version)
    if arg is not None and (not isinstance(arg, str) or not arg):
        raise TypeError(f"@handler takes a message type name, got {arg!r}")
    return lambda func: _mark(func, arg, version)


def _mark(func: F, message_type: str | None, version: int | None) -> F:
    _first_parameter(func)  # fail at import time, not at consumer start
    if message_type is None:
        _annotation_name(func)
    setattr(func, MARK, HandlerMark(message_type, version))
    return func


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One registered handler, ready to call: how to decode its body and whether it is async."""

    message_type: str
    func: Callable[..., Any]
    decode: BodyDecoder
    is_async: bool
    takes_envelope: bool = False  # a second parameter gets the Envelope (id, attempt, headers)
    version: int = 1  # the body version the handler wants; older ones are upcast to it
    from_json: Callable[[Any], Any] | None = None  # with msgspec, for most bodies: decode_fast
    build: Callable[[Any], Any] = identity  # what from_json gave -> the body

    def __repr__(self) -> str:
        kind = "async" if self.is_async else "sync, runs in a thread"
        version = f" version {self.version}" if self.version != 1 else ""
        return f"<Handler {self.message_type}{version} -> {qualified_name(self.func)} ({kind})>"


class HandlerRegistry:
    """Message type -> handler (and the upcasters of its older versions), for one consumer.
    Built once, read for every message."""

    def __init__(self, *, origin: tuple[str, str] = ("handlers", "")) -> None:
        self._specs: dict[str, HandlerSpec] = {}
        self._upcasters = Upcasters()
        self._origin = origin  # (file, key path) that errors name

    def __repr__(self) -> str:
        return f"<HandlerRegistry with {len(self._specs)} handlers: {', '.join(self.types())}>"

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, message_type: object) -> bool:
        return message_type in self._specs

    def __iter__(self) -> Iterator[HandlerSpec]:
        return iter(self._specs.values())

    @classmethod
    def from_modules(
        cls, modules: Iterable[str], *, origin: tuple[str, str] = ("handlers", "")
    ) -> HandlerRegistry:
        """Import each module and register every @handler and @upcaster function found in it."""
        registry = cls(origin=origin)
        for name in modules:
            module = registry._import(name)
            handlers = [v for v in vars(module).values() if hasattr(v, MARK)]
            upcasters = [v for v in vars(module).values() if hasattr(v, UPCASTER_MARK)]
            if not handlers and not upcasters:
                log.warning("module %s has no @handler functions", name)
            for func in handlers:
                registry.add(func)
            for func in upcasters:
                registry.add_upcaster(func)
        return registry

    def add(
        self, func: Callable[..., Any], message_type: str | None = None, *, version: int | None = None
    ) -> HandlerSpec:
        """Register one function (marked with @handler, or with an explicit message_type)."""
        mark = getattr(func, MARK, None)
        if message_type is None:
            message_type = (mark.message_type if mark else None) or _annotation_name(func)
        body_type = _body_type(func)
        version = self._version(func, version or (mark.version if mark else None), body_type)
        from_json, build = json_decoder_for(body_type) or (None, identity)
        spec = HandlerSpec(
            message_type,
            func,
            decoder_for(body_type),
            _is_async(func),
            _takes_envelope(func),
            version,
            from_json,
            build,
        )
        existing = self._specs.get(message_type)
        if existing is not None and existing.func is not func:
            raise self._error(
                f"two handlers for message type {message_type!r}: "
                f"{qualified_name(existing.func)} and {qualified_name(func)}"
            )
        self._specs[message_type] = spec
        self._check_upcasters(message_type)
        return spec

    def add_upcaster(
        self, func: Upcast, message_type: str | None = None, from_version: int | None = None
    ) -> None:
        """Register one upcaster (marked with @upcaster, or with an explicit type and version)."""
        mark = getattr(func, UPCASTER_MARK, None)
        message_type = message_type or (mark.message_type if mark else None)
        from_version = from_version or (mark.from_version if mark else None)
        if message_type is None or from_version is None:
            raise TypeError(f"{qualified_name(func)} is no @upcaster: name its message type and version")
        existing = self._upcasters.add(func, message_type, check_version(from_version, "from_version"))
        if existing is not None:
            raise self._error(
                f"two upcasters for {message_type} version {from_version}: "
                f"{qualified_name(existing)} and {qualified_name(func)}"
            )
        self._check_upcasters(message_type)

    def get(self, message_type: str) -> HandlerSpec:
        """The handler for a message type; NoHandler (-> failure queue) when there is none."""
        spec = self._specs.get(message_type)
        if spec is None:
            raise NoHandler(message_type, self._specs)
        return spec

    def decode_fast(self, data: bytes) -> tuple[Head, HandlerSpec, Any] | None:
        """Envelope head, handler and body-to-build in one pass over the bytes, for a message at
        its handler's version whose body msgspec decodes as the checks would (json_decoder_for).
        None for anything else: the general path (decode, get, upgrade, spec.decode) decides, with
        the same result and the precise error. The caller builds the body with ``spec.build``,
        which runs the body class's own __init__ (and raises what it raises, like spec.decode),
        and the Envelope with ``head.envelope()`` if it needs one."""
        head = split_fast(data) if split_fast is not None else None
        if head is None:
            return None
        spec = self._specs.get(head.type)
        if spec is None or spec.from_json is None or spec.version != head.version:
            return None
        try:
            parts = spec.from_json(head.body)
        except Exception:  # refused (or a default_factory failed): the general path says why
            return None
        return head, spec, parts

    def upgrade(self, envelope: Envelope, spec: HandlerSpec) -> Any:
        """The body of a message not at its handler's version, upgraded by the upcasters (or
        VersionGap, NewerVersion, UpcasterFailed). The worker calls it only when versions differ."""
        return self._upcasters.upgrade(envelope.type, envelope.body, envelope.version, spec.version)

    def decode_body(self, envelope: Envelope, spec: HandlerSpec | None = None) -> Any:
        """The handler's typed body for an envelope, the whole way: handler, upcasters, decoding."""
        spec = spec or self.get(envelope.type)
        body = envelope.body if envelope.version == spec.version else self.upgrade(envelope, spec)
        return spec.decode(body)

    def types(self) -> list[str]:
        return sorted(self._specs)

    def _import(self, name: str) -> Any:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            raise self._error(f"cannot import handler module {name!r}: {exc}") from exc

    def _error(self, problem: str) -> ConfigError:
        return ConfigError(self._origin[0], self._origin[1], problem)

    def _version(self, func: Callable[..., Any], declared: int | None, body_type: Any) -> int:
        """The handler's version: declared on it, or its body class's ``__version__``; they must agree."""
        try:
            of_class = declared_version(body_type)
        except TypeError as exc:
            raise self._error(f"handler {qualified_name(func)}: {exc}") from None
        if declared is not None and of_class is not None and declared != of_class:
            raise self._error(
                f"handler {qualified_name(func)} declares version {declared} but its body type "
                f"{body_type.__qualname__} has __version__ = {of_class}"
            )
        return declared or of_class or 1

    def _check_upcasters(self, message_type: str) -> None:
        """An upcaster to a version past the handler's means the handler's version was not bumped."""
        spec = self._specs.get(message_type)
        highest = self._upcasters.highest(message_type)
        if spec is not None and highest >= spec.version:
            raise self._error(
                f"an upcaster upgrades {message_type} to version {highest + 1}, but its handler "
                f"{qualified_name(spec.func)} is at version {spec.version}: bump the handler's version"
            )


def qualified_name(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "?"
    return f"{module}.{getattr(func, '__qualname__', repr(func))}"


def _first_parameter(func: Callable[..., Any]) -> inspect.Parameter:
    params = list(inspect.signature(func).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or params[0].kind not in positional:
        name = qualified_name(func)
        raise TypeError(f"handler {name} must take the message body as its first argument")
    return params[0]


def _annotation_name(func: Callable[..., Any]) -> str:
    """The message type named by the body annotation: a class name, or its string form."""
    annotation = _first_parameter(func).annotation
    if isinstance(annotation, str):  # `from __future__ import annotations`: no import needed
        name = annotation.strip("'\"").rsplit(".", 1)[-1]
    else:
        name = getattr(annotation, "__name__", "")
    if not name or name in ("dict", "Any", "object", "Mapping") or "[" in name:
        raise TypeError(
            f"handler {qualified_name(func)}: the body annotation does not name a message type; "
            "use @handler('TypeName') or annotate the body with a dataclass"
        )
    return name


def _body_type(func: Callable[..., Any]) -> Any:
    """The body's annotated type, resolved (string annotations included)."""
    param = _first_parameter(func)
    if param.annotation is inspect.Parameter.empty:
        return Any
    target = func if inspect.isfunction(func) or inspect.ismethod(func) else type(func).__call__
    try:
        hints = typing.get_type_hints(target)
    except Exception as exc:  # a NameError in a forward reference: say which handler
        name = qualified_name(func)
        raise TypeError(f"handler {name}: cannot resolve its annotations: {exc}") from exc
    return hints.get(param.name, Any)


def _takes_envelope(func: Callable[..., Any]) -> bool:
    """`async def h(body, envelope)`: the handler also wants the id, attempt and headers
    (an idempotency key under at-least-once delivery is the envelope's id)."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = [p for p in inspect.signature(func).parameters.values() if p.kind in positional]
    return len(params) >= 2


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with an async __call__
    )

"""Where the control socket lives: the server finds it from its Config, `asyncsup ctl` from the file.

By default the socket sits next to the config file and is named after it: `/app/asyncsup.toml` ->
`/app/asyncsup.sock`. `asyncsup ctl -c /app/asyncsup.toml` then finds it with no setting at all, two
configs in one folder get two sockets, and it is where an operator looks first. `[asyncsup]
control_socket` moves it (relative to the config's folder, like every path): needed when that folder
is read-only, e.g. a Kubernetes ConfigMap. A default location that cannot be used is only a warning
(asyncsup runs without a socket); an explicit one that cannot be used is an error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


def default_socket(config_file: Path) -> Path:
    return config_file.with_suffix(".sock")  # asyncsup.toml -> asyncsup.sock; "config" -> config.sock


def server_socket(config: Config) -> tuple[Path, bool]:
    """(path, explicit): the configured path, or the default next to the config file."""
    if config.settings.control_socket is not None:
        return config.settings.control_socket, True
    return default_socket(config.file), False


def socket_for_file(file: str) -> Path:
    """The socket a config file names, reading only [asyncsup] control_socket.

    The client must not validate the whole config: `${VAR}` references and `user =` entries are
    resolved in the server's environment, which the shell running `asyncsup ctl` need not share.
    """
    absolute = Path(os.path.abspath(file))
    try:
        data = tomllib.loads(absolute.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read the file: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(file, "", f"invalid TOML: {exc}") from None
    settings = data.get("asyncsup", {})
    configured = settings.get("control_socket") if isinstance(settings, dict) else None
    if configured is None:
        return default_socket(absolute)
    if not isinstance(configured, str) or not configured:
        raise ConfigError(file, "asyncsup.control_socket", "expected a non-empty string")
    return Path(os.path.normpath(absolute.parent / configured))

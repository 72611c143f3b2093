"""The Rill home: identity key, configuration and database paths (no policy, little I/O)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing

from ..protocol.errors import LocalError
from ..protocol.keys import parse_peer
from ..protocol.work import MAX_WORK_BITS, NETWORK_WORK_BITS
from .configtext import set_array_text, set_blocked_text
from .errors import HomeError

IDENTITY_FILE = "identity.key"
CONFIG_FILE = "config.toml"
DB_FILE = "rill.db"

DEFAULT_CONFIG = """\
# Rill configuration (TOML).  Amounts are in minor units (cents for EUR).

# Display name used in exports and on the dashboard.
name = {name}

[payments]
# Amounts owed to one creator below this total carry forward to the next month
# instead of creating dust payments (0 = pay every claim at once).
min_payout = 100

[creator]
# Claims from donors who never paid you (no receipt yet) taken in per month; more are
# refused, so a flood of strangers' IOUs cannot bury your real supporters.
new_donors_per_month = 1000

[network]
# Proof of work on settlements, in bits (SPEC §11.2): the public network asks for 20
# (about a second of CPU once a month).  Only a private or test network whose every
# node is configured alike may lower it.
work_bits = 20
"""


#: A display name's limit: what a key document carries (SPEC §12.1, 128 UTF-8 bytes).
MAX_NAME_BYTES = 128


def user_name() -> str:
    """The name a new identity gets when none is given: the user's login name."""
    import getpass

    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        name = os.environ.get("USER", "")
    name = name.strip()
    return name if name and check_name(name) is None else "me"


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be a display name, or None."""
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"a name is at most {MAX_NAME_BYTES} bytes of UTF-8"
    if any(c < " " or c == "\x7f" for c in name):
        return "a name cannot hold control characters (line breaks, tabs...)"
    return None


def default_home() -> Path:
    """``$RILL_HOME`` or the platform's user data directory."""
    env = os.environ.get("RILL_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("rill", appauthor=False))


@dataclass(frozen=True)
class Config:
    name: str = ""
    min_payout: int = 100
    raw: dict[str, Any] = field(default_factory=dict)
    #: Bits of proof of work this home puts on its settlements ([network] work_bits).
    work_bits: int = NETWORK_WORK_BITS
    #: Claims from never-paying donors taken in per month ([creator]).
    new_donors_per_month: int = 1000
    #: Peers the node never talks to ([network] blocked), as canonical peer IDs.
    blocked: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, where: str = CONFIG_FILE) -> Config:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise HomeError(f"{where}: not valid TOML: {exc}") from None
        name = data.get("name", "")
        payments = data.get("payments", {})
        min_payout = payments.get("min_payout", 100) if isinstance(payments, dict) else None
        if not isinstance(name, str):
            raise HomeError(f"{where}: 'name' must be a string")
        if type(min_payout) is not int or min_payout < 0:
            raise HomeError(f"{where}: payments.min_payout must be a non-negative integer")
        creator = data.get("creator", {})
        if not isinstance(creator, dict):
            raise HomeError(f"{where}: [creator] must be a table")
        new_donors = creator.get("new_donors_per_month", 1000)
        if type(new_donors) is not int or new_donors < 0:
            raise HomeError(f"{where}: creator.new_donors_per_month must be a non-negative "
                            "integer")
        network = data.get("network", {})
        if not isinstance(network, dict):
            raise HomeError(f"{where}: [network] must be a table")
        work_bits = network.get("work_bits", NETWORK_WORK_BITS)
        if type(work_bits) is not int or not 0 <= work_bits <= MAX_WORK_BITS:
            raise HomeError(f"{where}: network.work_bits must be an integer 0..{MAX_WORK_BITS} "
                            f"(the public network asks for {NETWORK_WORK_BITS}), not "
                            f"{work_bits!r}")
        blocked = parse_blocked(network.get("blocked", []), where)
        return cls(name, min_payout, data, work_bits, new_donors, blocked)


#: Most peers a blocklist holds (config.toml ``[network] blocked``).
MAX_BLOCKED = 10_000


def parse_blocked(value: Any, where: str = CONFIG_FILE) -> tuple[str, ...]:
    """``[network] blocked``: a list of peer IDs (``12D3KooW...``) or identities
    (``did:key:...``), as canonical peer IDs without repeats; :class:`HomeError`."""
    if not isinstance(value, list) or len(value) > MAX_BLOCKED:
        raise HomeError(f"{where}: network.blocked must be a list of peer IDs (at most "
                        f"{MAX_BLOCKED}), e.g. blocked = [\"12D3KooW...\"]")
    out: dict[str, None] = {}
    for item in value:
        try:
            out[parse_peer(item)] = None
        except LocalError as exc:
            raise HomeError(f"{where}: network.blocked: {exc}", code="bad-peer") from None
    return tuple(out)


class Home:
    """Paths of one home directory, and its identity."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self._config: tuple[tuple[int, int, int], Config] | None = None

    @property
    def identity_path(self) -> Path:
        return self.path / IDENTITY_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def db_path(self) -> Path:
        return self.path / DB_FILE

    def exists(self) -> bool:
        return self.identity_path.exists()

    def create(self, name: str, seed: bytes) -> None:
        """Create the directory, the identity (mode 0600) and the config.

        Refuses to overwrite an existing identity (atomic O_EXCL create).
        """
        if len(seed) != 32:
            raise HomeError("an identity seed is 32 bytes")
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(self.identity_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise HomeError(f"{self.path} already has an identity; refusing to overwrite it",
                            code="exists") from None
        made_config = False
        try:  # a full disk must not leave a half-written key or config behind
            with os.fdopen(fd, "w") as fh:
                fh.write(seed.hex() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            if not self.config_path.exists():
                made_config = True
                self.write_config(DEFAULT_CONFIG.format(name=_toml_string(name)))
            else:
                fsync_dir(self.path)  # the identity's name in the directory
        except BaseException:
            for made in ([self.identity_path] + ([self.config_path] if made_config else [])):
                with contextlib.suppress(OSError):
                    made.unlink()
            raise

    def _own_files(self) -> list[Path]:
        db = self.db_path
        return [self.identity_path, self.config_path, db, db.with_name(db.name + "-wal"),
                db.with_name(db.name + "-shm"), self.config_path.with_name(CONFIG_FILE + ".tmp")]

    def before_create(self) -> tuple[bool, set[Path]]:
        """What exists before :meth:`create` (for :meth:`undo_create`)."""
        return self.path.exists(), {p for p in self._own_files() if p.exists()}

    def undo_create(self, before: tuple[bool, set[Path]]) -> None:
        """Remove what a create (and the first open) made, after a later step failed (a
        full disk): nothing that existed before is touched.  The key removed was made a
        moment ago, so nothing depended on it yet."""
        existed, files = before
        for p in self._own_files():
            if p not in files:
                with contextlib.suppress(OSError):
                    p.unlink()
        if not existed:
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def write_config(self, text: str) -> None:
        """Replace config.toml durably: a power cut leaves the old file or the new one,
        never an empty or partial one (the data is fsynced before the rename, the
        directory after it); on a failure (a full disk) the temporary file is removed."""
        tmp = self.config_path.with_name(CONFIG_FILE + ".tmp")
        try:
            with open(tmp, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.config_path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        fsync_dir(self.path)

    def set_name(self, name: str) -> None:
        """Change the display name in config.toml, keeping every other line as it is."""
        why = check_name(name)
        if why is not None:
            raise HomeError(why, code="bad-name")
        line = f"name = {_toml_string(name)}"
        try:
            text = self.config_path.read_text()
        except FileNotFoundError:
            text = DEFAULT_CONFIG.format(name=_toml_string(""))
        Config.parse(text, str(self.config_path))  # refuse to edit a config that is broken
        table = re.search(r"^[ \t]*\[", text, re.M)  # top-level keys come before any table
        top, rest = (text[:table.start()], text[table.start():]) if table else (text, "")
        found = re.search(r"^[ \t]*name[ \t]*=.*$", top, re.M)
        top = top[:found.start()] + line + top[found.end():] if found else line + "\n" + top
        new = top + rest
        if Config.parse(new, str(self.config_path)).name != name:
            raise HomeError(f"{self.config_path}: could not set the name; edit its "
                            "'name = ...' line by hand")
        self.write_config(new)

    def block(self, peer: str) -> bool:
        """Add a peer (a peer ID or did:key) to ``[network] blocked``; True if it was not
        there.  Every other line of config.toml is kept as it is."""
        peer = _peer_arg(peer)
        with self._config_lock():
            blocked = self._read_config().blocked
            if peer in blocked:
                return False
            self._write_blocked((*blocked, peer))
            return True

    def unblock(self, peer: str) -> bool:
        """Remove a peer from ``[network] blocked``; True if it was there."""
        peer = _peer_arg(peer)
        with self._config_lock():
            blocked = self._read_config().blocked
            if peer not in blocked:
                return False
            self._write_blocked(tuple(p for p in blocked if p != peer))
            return True

    def remember_peer(self, addr: str) -> bool:
        """Add a multiaddr to ``[node] bootstrap`` (``rill peers add``); True if it was not
        there.  Every other line of config.toml is kept as it is."""
        with self._config_lock():
            try:
                text = self.config_path.read_text()
            except FileNotFoundError:
                text = ""
            raw = Config.parse(text, str(self.config_path)).raw if text else {}
            node = raw.get("node", {})
            if not isinstance(node, dict):
                raise HomeError(f"{self.config_path}: [node] must be a table")
            known = node.get("bootstrap", [])
            if not isinstance(known, list) or not all(isinstance(a, str) for a in known):
                raise HomeError(f"{self.config_path}: node.bootstrap must be a list of "
                                "multiaddrs")
            if addr in known:
                return False
            wanted = (*known, addr)
            new = set_array_text(text, "node", "bootstrap", wanted, _toml_string)
            try:
                after = Config.parse(new, str(self.config_path)).raw
            except HomeError:
                after = None
            if (after is None or after.get("node", {}).get("bootstrap") != list(wanted)
                    or {k: v for k, v in after.items() if k != "node"}
                    != {k: v for k, v in raw.items() if k != "node"}
                    or {k: v for k, v in after.get("node", {}).items() if k != "bootstrap"}
                    != {k: v for k, v in node.items() if k != "bootstrap"}):
                raise HomeError(f"{self.config_path}: could not change [node] bootstrap; "
                                "edit it by hand (bootstrap = [\"/ip4/.../p2p/...\", ...])")
            self.write_config(new)
            return True

    @contextlib.contextmanager
    def _config_lock(self) -> Iterator[None]:
        """One config writer at a time (two `rill peers block` at once lose nothing)."""
        import fcntl

        if not self.path.is_dir():
            raise HomeError(f"no Rill home at {self.path}: run `rill init` first",
                            code="no-home")
        with open(self.path / (CONFIG_FILE + ".lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_config(self) -> Config:
        try:
            text = self.config_path.read_text()
        except FileNotFoundError:
            return Config()
        return Config.parse(text, str(self.config_path))

    def _write_blocked(self, blocked: tuple[str, ...]) -> None:
        try:
            text = self.config_path.read_text()
        except FileNotFoundError:
            text = ""
        before = Config.parse(text, str(self.config_path)).raw if text else {}
        new = set_blocked_text(text, blocked, _toml_string)
        try:
            after: Config | None = Config.parse(new, str(self.config_path))
        except HomeError:
            after = None
        wanted = {k: v for k, v in before.items() if k != "network"}
        net = {k: v for k, v in before.get("network", {}).items() if k != "blocked"}
        if (after is None or after.blocked != blocked
                or {k: v for k, v in after.raw.get("network", {}).items()
                    if k != "blocked"} != net
                or {k: v for k, v in after.raw.items() if k != "network"} != wanted):
            raise HomeError(f"{self.config_path}: could not change [network] blocked; edit "
                            "it by hand (blocked = [\"12D3KooW...\", ...])")
        self.write_config(new)

    def signing_key(self) -> nacl.signing.SigningKey:
        try:
            text = self.identity_path.read_text().strip()
        except FileNotFoundError:
            raise HomeError(f"no Rill home at {self.path}: run `rill init` first",
                            code="no-home") from None
        except OSError as exc:
            raise HomeError(f"cannot read {self.identity_path}: {exc.strerror}") from None
        mode = self.identity_path.stat().st_mode & 0o777
        if mode & 0o077:
            raise HomeError(f"{self.identity_path} is readable by others (mode {mode:o}); "
                            f"run: chmod 600 {self.identity_path}", code="key-mode")
        try:
            seed = bytes.fromhex(text)
        except ValueError:
            seed = b""
        if len(seed) != 32:
            raise HomeError(f"{self.identity_path} does not hold a 32-byte hex seed")
        return nacl.signing.SigningKey(seed)

    def config(self) -> Config:
        """The parsed config.toml, read again only when the file changed."""
        try:
            st = self.config_path.stat()
        except FileNotFoundError:
            return Config()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._config is not None and self._config[0] == stamp:
            return self._config[1]
        try:
            text = self.config_path.read_text()
        except FileNotFoundError:
            return Config()
        config = Config.parse(text, str(self.config_path))
        self._config = (stamp, config)
        return config


def fsync_dir(path: Path | str) -> None:
    """Make the names in a directory durable (a new or renamed file survives a power cut).
    Where directories cannot be opened or synced (Windows, some network file systems)
    this does nothing."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _peer_arg(peer: str) -> str:
    try:
        return parse_peer(peer)
    except LocalError as exc:
        raise HomeError(str(exc), code="bad-peer") from None


def _toml_string(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"')
    out = "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in out)
    return f'"{out}"'

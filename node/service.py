"""`rill node install-service`: a systemd user unit that runs ``rill node run``.

The unit runs as the user (no root), restarts the node when it fails, and stops it with
SIGTERM, which the daemon handles cleanly.  Its log goes to the journal
(``journalctl --user -u rill``) unless a ``--log-file`` is given.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

UNIT_NAME = "rill.service"


def unit_dir() -> Path:
    """Where systemd looks for the user's own units: $XDG_CONFIG_HOME/systemd/user."""
    config = os.environ.get("XDG_CONFIG_HOME") or ""
    base = Path(config) if os.path.isabs(config) else Path.home() / ".config"
    return base / "systemd" / "user"


def rill_command() -> list[str]:
    """The absolute command that starts this very installation of Rill."""
    beside = Path(sys.executable).parent / "rill"  # the venv's or pipx's script
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    found = shutil.which("rill")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "rill.cli"]


def _quote(word: str, command: bool = False) -> str:
    """One ExecStart word: systemd expands % specifiers everywhere and $ variables in
    the arguments (not in the command itself), and splits at spaces unless quoted."""
    word = word.replace("%", "%%")
    if not command:
        word = word.replace("$", "$$")
    if word and not any(c in word for c in " \t\"'\\;"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(home: Path, run_args: list[str], command: list[str] | None = None) -> str:
    """The unit file's text for a node on ``home`` started with extra ``run_args``."""
    argv = [*(command or rill_command()), "node", "run", "--home", str(home), *run_args]
    return f"""\
# Rill node, written by `rill node install-service`.  After editing it, run:
#   systemctl --user daemon-reload && systemctl --user restart rill
[Unit]
Description=Rill node (home {str(home).replace("%", "%%")})

[Service]
Type=simple
ExecStart={" ".join(_quote(a, command=i == 0) for i, a in enumerate(argv))}
# SIGTERM stops the node cleanly: transactions finish, the control socket is removed
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=on-failure
RestartSec=10

[Install]
WantedBy=default.target
"""


def next_steps(path: Path) -> list[tuple[str, str]]:
    """(why, command) for the user, in order."""
    return [
        ("start the node now and at every login",
         "systemctl --user daemon-reload && systemctl --user enable --now rill"),
        ("keep it running when you log out, and start it at boot",
         "loginctl enable-linger"),
        ("follow its log", "journalctl --user -u rill -f"),
        ("stop it for good and remove it",
         f"systemctl --user disable --now rill && rm {shlex.quote(str(path))}"),
    ]


def install(home: Path, run_args: list[str], force: bool) -> tuple[Path, str, bool]:
    """Write the unit; (its path, its text, whether the file changed).  An existing
    different unit is replaced only with ``force`` (FileExistsError otherwise)."""
    path = unit_dir() / UNIT_NAME
    text = render_unit(home, run_args)
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = None
    if old == text:
        return path, text, False
    if old is not None and not force:
        raise FileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(UNIT_NAME + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path, text, True

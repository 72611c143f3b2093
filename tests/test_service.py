"""`rill node install-service`: the systemd user unit, where it goes, what it says."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from rill.node.service import render_unit

RILL = str(Path(sys.executable).parent / "rill")


def rill(tmp: Path, *args: str, code: int = 0, xdg: bool = True
         ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RILL_HOME", "XDG_CONFIG_HOME")}
    env["HOME"] = str(tmp / "user")
    if xdg:
        env["XDG_CONFIG_HOME"] = str(tmp / "xdg")
    proc = subprocess.run([RILL, "node", "install-service", *args], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return proc


def exec_start(unit: str) -> list[str]:
    """ExecStart's words as systemd reads them (double quotes, backslash escapes, %% for
    a literal %, and $$ for a literal $ in the arguments)."""
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    words = [w.replace("%%", "%") for w in shlex.split(line[10:])]
    return words[:1] + [w.replace("$$", "$") for w in words[1:]]


def systemd_accepts(unit: Path) -> None:
    """systemd's own check of the file (keys, quoting, the executable), where it exists."""
    if shutil.which("systemd-analyze") is None:
        return
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "rill.service" not in proc.stderr, proc.stderr


def test_writes_the_unit_explains_it_and_refuses_to_overwrite(tmp_path: Path) -> None:
    home = tmp_path / "my home"
    proc = rill(tmp_path, "--home", str(home))
    unit_path = tmp_path / "xdg" / "systemd" / "user" / "rill.service"
    unit = unit_path.read_text()
    assert f"Wrote {unit_path}" in proc.stdout
    assert "systemctl --user daemon-reload && systemctl --user enable --now rill" in proc.stdout
    assert "loginctl enable-linger" in proc.stdout and "journalctl --user -u rill" in proc.stdout
    assert "[Service]" in unit and "Restart=on-failure" in unit and "KillSignal=SIGTERM" in unit
    assert unit.rstrip().endswith("[Install]\nWantedBy=default.target")
    argv = exec_start(unit)
    assert argv[0] == RILL and argv[1:] == ["node", "run", "--home", str(home)]
    assert subprocess.run([argv[0], "--version"], capture_output=True).returncode == 0
    systemd_accepts(unit_path)
    # the same again: nothing to do; a different one: refused without --force
    assert "Unchanged" in rill(tmp_path, "--home", str(home)).stdout
    proc = rill(tmp_path, "--home", str(home), "--dashboard-port", "4800", code=1)
    assert "--force" in proc.stderr and unit_path.read_text() == unit
    r = json.loads(rill(tmp_path, "--home", str(home), "--dashboard-port", "4800",
                        "--log-file", "node.log", "--force", "--json").stdout)
    assert r["written"] is True and r["path"] == str(unit_path)
    assert exec_start(unit_path.read_text())[5:] == [
        "--dashboard-port", "4800", "--log-file", str(Path.cwd() / "node.log")]


def test_print_only_and_the_default_place(tmp_path: Path) -> None:
    proc = rill(tmp_path, "--home", str(tmp_path / "h"), "--print", xdg=False)
    assert proc.stdout.startswith("# Rill node") and "ExecStart=" in proc.stdout
    assert not (tmp_path / "user").exists()  # --print writes nothing
    rill(tmp_path, "--home", str(tmp_path / "h"), xdg=False)
    assert (tmp_path / "user" / ".config" / "systemd" / "user" / "rill.service").is_file()


def test_odd_paths_survive_systemd_quoting(tmp_path: Path) -> None:
    home = Path('/srv/50% "rill" $HOME\\x')
    unit = render_unit(home, ["--log-file", "/var/log/a b.log"], command=["/opt/r$i/rill"])
    assert exec_start(unit) == ["/opt/r$i/rill", "node", "run", "--home", str(home),
                                "--log-file", "/var/log/a b.log"]
    assert "Description=Rill node (home /srv/50%% " in unit
    odd = tmp_path / "a 100% $odd"
    odd.mkdir()
    (odd / "rill").symlink_to(RILL)
    (tmp_path / "rill.service").write_text(render_unit(home, [], command=[str(odd / "rill")]))
    systemd_accepts(tmp_path / "rill.service")

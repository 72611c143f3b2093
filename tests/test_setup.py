"""Getting started: `rill init` and `rill node run` on new and existing homes, busy ports,
the daemon's log, shell completion, `make run ARGS=...` and what the package ships."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rill.wallet.errors import HomeError
from rill.wallet.home import Config, Home

RILL = str(Path(sys.executable).parent / "rill")
ROOT = Path(__file__).resolve().parent.parent


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("RILL_HOME", "MAKELEVEL")}
    out.update(LOGNAME="dora", USER="dora")
    out.update(extra)
    return out


def rill(*args: str, code: int | None = 0, **extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([RILL, *args], capture_output=True, text=True, env=env(**extra),
                          timeout=60)
    if code is not None:
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something really listens on (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


# -- names ------------------------------------------------------------------------------


def test_init_names_the_identity_and_refuses_a_second_one_saying_how_to_rename(
        tmp_path: Path) -> None:
    home = tmp_path / "h"
    made = json.loads(rill("init", "--home", str(home), "--json").stdout)
    assert made["name"] == "dora"  # the login name: nothing asked
    assert Home(home).config().name == "dora"
    proc = rill("init", "--home", str(home), "--name", "Dora Day", code=1)
    assert "already has an identity" in proc.stderr and 'named "dora"' in proc.stderr
    assert "rill id --name 'Dora Day'" in proc.stderr  # a command one can paste
    assert "--home" in proc.stderr
    assert Home(home).config().name == "dora"  # nothing changed
    other = tmp_path / "other"
    assert json.loads(rill("init", "--home", str(other), "--name", "Dora", "--json").stdout
                      )["name"] == "Dora"
    bad = rill("init", "--home", str(tmp_path / "bad"), "--name", "two\nlines", code=2)
    assert "control characters" in bad.stderr and not (tmp_path / "bad").exists()


def test_set_name_changes_only_the_name_line(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    home.create("", bytes(32))
    text = home.config_path.read_text().replace("min_payout = 100", "min_payout = 7")
    home.config_path.write_text(text + "\n[node]\nname = 'not the top-level one'\n")
    home.set_name('Dora "the donor" \\ Day')
    cfg = home.config()
    assert cfg.name == 'Dora "the donor" \\ Day' and cfg.min_payout == 7
    assert cfg.raw["node"]["name"] == "not the top-level one"
    after = home.config_path.read_text().splitlines()
    assert len(after) == len(text.splitlines()) + 3  # every comment and table kept
    # a config without a name gets one, before the first table
    home.config_path.write_text("[payments]\nmin_payout = 3\n")
    home.set_name("Ada")
    assert Config.parse(home.config_path.read_text()) == Config(
        "Ada", 3, {"name": "Ada", "payments": {"min_payout": 3}})
    for bad in ("x" * 129, "tab\there"):
        with pytest.raises(HomeError):
            home.set_name(bad)
    home.config_path.write_text("name = [broken")
    with pytest.raises(HomeError, match="not valid TOML"):
        home.set_name("Ada")
    assert home.config_path.read_text() == "name = [broken"


# -- the daemon: a new home, its log, a second daemon, busy ports ------------------------


def start(home: Path, *args: str, **extra: str) -> tuple[subprocess.Popen[str], Any]:
    proc = subprocess.Popen([RILL, "node", "run", "--json", "--home", str(home),
                             "--listen", "/ip4/127.0.0.1/tcp/0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(**extra))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(proc.communicate(timeout=30)[1])
    return proc, json.loads(line)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_node_run_names_a_new_home_and_logs_to_a_file(tmp_path: Path) -> None:
    home, log = tmp_path / "h", tmp_path / "logs" / "rill.log"
    log.parent.mkdir()
    proc, started = start(home, "--dashboard-port", "0", "--log-file", str(log),
                          "--log-level", "info")
    try:
        assert started["event"] == "started"
        assert Home(home).config().name == "dora"
        # a second daemon on the same home is told so (not about a port it holds)
        second = rill("node", "run", "--home", str(home), "--dashboard-port", "0",
                      "--listen", "/ip4/127.0.0.1/tcp/0", code=1)
        assert "already running on this home" in second.stderr
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert f"Created a new home at {home}" in err
    assert 'named "dora" after your login' in err and "rill id --name NAME" in err
    assert " INFO " not in err  # the log went to the file
    text = log.read_text()
    assert " INFO rill.node: node 12D3KooW" in text and "listening on /ip4/127.0.0.1" in text
    assert "signal 15: shutting down" in text
    # --log-level error: nothing below it
    log.unlink()
    proc, _ = start(home, "--dashboard-port", "0", "--log-file", str(log),
                    "--log-level", "error")
    assert stop(proc)[0] == 0
    assert " INFO " not in log.read_text()
    bad = rill("node", "run", "--home", str(home), "--log-file",
               str(tmp_path / "no" / "such" / "dir.log"), code=1)
    assert "cannot write the log file" in bad.stderr


def test_a_busy_dashboard_port_names_the_port_and_the_flag(tmp_path: Path,
                                                           busy_port: int) -> None:
    proc = rill("node", "run", "--home", str(tmp_path / "h"), "--listen",
                "/ip4/127.0.0.1/tcp/0", "--dashboard-port", str(busy_port), code=1)
    err = proc.stderr
    assert f"the dashboard's port {busy_port} (127.0.0.1:{busy_port}) is already in use" in err
    assert "choose another with --dashboard-port " in err and "0: no dashboard" in err
    assert "Errno" not in err and "Traceback" not in err
    suggested = int(err.split("--dashboard-port ")[1].split()[0])
    assert suggested != busy_port
    # under make, the hint says how flags get through
    proc = rill("node", "run", "--home", str(tmp_path / "h"), "--listen",
                "/ip4/127.0.0.1/tcp/0", "--dashboard-port", str(busy_port), code=1,
                MAKELEVEL="1")
    assert re.search(r'\n\(with make: make run ARGS="--dashboard-port \d+"\)', proc.stderr)


def test_a_busy_p2p_port_names_the_port_and_the_flag(tmp_path: Path, busy_port: int) -> None:
    proc = rill("node", "run", "--home", str(tmp_path / "h"), "--listen",
                f"/ip4/127.0.0.1/tcp/{busy_port}", "--dashboard-port", "0", code=1)
    err = proc.stderr
    assert f"TCP port {busy_port} (/ip4/127.0.0.1/tcp/{busy_port}) is already in use" in err
    suggested = int(err.split("--listen /ip4/127.0.0.1/tcp/")[1].split()[0])
    assert suggested % 10 == busy_port % 10 and suggested > busy_port  # 4741 -> 4751...
    assert "Errno" not in err and "Traceback" not in err


# -- shell completion, make, packaging --------------------------------------------------


def test_shell_completion_scripts_and_answers() -> None:
    bash = rill(_RILL_COMPLETE="bash_source").stdout
    assert "_rill_completion()" in bash and "complete -o nosort -F _rill_completion rill" in bash
    assert "#compdef rill" in rill(_RILL_COMPLETE="zsh_source").stdout
    assert "complete --no-files --command rill" in rill(_RILL_COMPLETE="fish_source").stdout
    answer = rill(_RILL_COMPLETE="bash_complete", COMP_WORDS="rill node ins",
                  COMP_CWORD="2").stdout
    assert answer.split() == ["plain,install-service"]


def test_make_passes_args_to_the_commands() -> None:
    for target, command in (("run", "rill node run"), ("demo", "rill demo")):
        proc = subprocess.run(["make", "-n", "-C", str(ROOT), target,
                               "ARGS=--dashboard-port 4800"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert f".venv/bin/{command} --dashboard-port 4800" in proc.stdout


def test_the_package_ships_every_module_template_and_static_file() -> None:
    """Each folder of Python files is a listed package and every other file under node/
    (templates, styles, icons...) matches the package data, so a wheel or `pipx install .`
    gets them all, and setuptools has nothing to warn about."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, data = set(tool["packages"]), tool["package-data"]
    assert tool["package-dir"] == {"rill": "."}
    for sub in ("protocol", "wallet", "node"):
        for folder in [ROOT / sub, *(p for p in (ROOT / sub).rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__":
                continue
            name = "rill." + ".".join(folder.relative_to(ROOT).parts)
            files = [p for p in folder.iterdir() if p.is_file()]
            if not files:
                continue
            assert name in packages, f"{name} is not in [tool.setuptools] packages"
            for f in files:
                if f.suffix in (".py", ".pyc"):
                    continue
                assert any(fnmatch.fnmatch(f.name, g) for g in data.get(name, ())), \
                    f"{f.relative_to(ROOT)} would not be installed"

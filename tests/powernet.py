"""A `rill node run` daemon storing gossip on LazyFS, cut by a power cut, restarted.

Shared by tests/test_power_loss.py (the invariants) and tests/bench/run.py (the
figures): a publisher on the ordinary disk floods donors' objects to a store node whose
database lives on LazyFS (tests/lazyfs.py); the store node is SIGKILLed and the power
cut, then it restarts and catches up.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from pathlib import Path

from lazyfs import LazyFS

from rill.protocol.months import month_end
from rill.wallet.wallet import Wallet


def node_home(path: Path, name: str, db: Path | None = None) -> Path:
    """A home for `rill node run` on a test network (no proof of work).  With ``db`` its
    database lives there (on LazyFS) through a symlink: LazyFS cannot hold the daemon's
    control socket (no mknod), so the rest of the home stays on the ordinary disk."""
    from rill.wallet.home import Home

    home = Home(path)
    home.create(name, hashlib.sha256(b"power " + name.encode()).digest())
    home.write_config(home.config_path.read_text().replace("work_bits = 20", "work_bits = 0"))
    if db is not None:
        (path / "rill.db").symlink_to(db)
    Wallet.open(path).close()
    return path


def gossip_objects(base: Path, creator: bytes, donors: int) -> tuple[list[bytes], int]:
    """Donors' settlements and sealed claims for October: each settlement and one sealed
    claim concern ``creator``; two sealed claims are for other creators (relay only)."""
    import nacl.signing

    from rill.protocol.months import month_start

    others = [bytes(nacl.signing.SigningKey.generate().verify_key) for _ in range(2)]
    objects, own = [], 0
    for d in range(donors):
        with Wallet.open(node_home(base / f"donor{d}", f"donor{d}")) as w:
            w.set_budget(1000 + d, "EUR", month_start("2026-10") + 10)
            for k, c in enumerate((creator, *others)):
                w.click(f"https://c{k}.example/{d}", month_start("2026-10") + 20 + k,
                        creator=c)
            res, _ = w.settle("2026-10", END + 61)
        objects += [res.settlement.raw, *(s.raw for s in res.sealed)]
        own += 2
    return objects, own


END = month_end("2026-10")


def held(db_path: Path) -> dict[bytes, int]:
    """The objects a node's database holds (ID -> protection class), read beside it."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return {bytes(i): k for i, k in db.execute("SELECT id, keep FROM objects")}
    finally:
        db.close()


def came_back_by(log: Path, offset: int, lost: set[bytes]) -> dict[str, int]:
    """How the lost objects came back after the restart, from the node's log lines
    ("sync: <type> <id16> ...", "reconcile: ..." or "gossip: ...")."""
    short = {i.hex()[:16] for i in lost}
    out: dict[str, int] = {}
    with open(log) as fh:
        fh.seek(offset)
        for line in fh:
            words = line.split("rill.node: ", 1)[-1].split()
            if len(words) >= 3 and words[0].rstrip(":") in ("sync", "gossip", "adopted",
                                                            "reconcile") \
                    and words[2] in short:
                short.discard(words[2])
                key = words[0].rstrip(":")
                out[key] = out.get(key, 0) + 1
    return out



#: Where a daemon trial's crash is armed (operation, from regex): the store's WAL writes
#: and its fsyncs (at NORMAL the WAL is fsynced only at a checkpoint), the database
#: file's writes and fsyncs (the checkpoint itself).  Matched against the store's path.
DAEMON_CRASH_POINTS = [
    ("write", r"store\d+\.db-wal$"),
    ("fsync", r"store\d+\.db-wal$"),
    ("write", r"store\d+\.db$"),
    ("fsync", r"store\d+\.db$"),
]


def stored_by_log(log: Path, published: set[bytes]) -> set[bytes]:
    """The published objects the node's log says it stored (a line is written after
    the commit that stored it), for a trial where LazyFS crashed: its mount is dead
    then, so what the node held before the cut cannot be read from it."""
    short = {i.hex()[:16]: i for i in published}
    out = set()
    for line in log.read_text(errors="replace").splitlines():
        words = line.split("rill.node: ", 1)[-1].split()
        if len(words) >= 3 and words[0].rstrip(":") in ("sync", "gossip", "adopted") \
                and words[2] in short:
            out.add(short[words[2]])
    return out


def gossip_rounds(fs: LazyFS, base: Path, rounds: int, donors: int, seed: int,
                  publisher_restarts: bool | None = None,
                  crash_share: float = 0.0) -> list[dict[str, float]]:
    """Per round: a publisher (ordinary disk) gossips donors' objects to a store node
    (database on LazyFS); the store node is SIGKILLed at a random point of the flood and
    the power cut; the publisher goes on with the rest; the store node restarts and
    catches up.  With ``crash_share`` > 0 that share of rounds arms instead a LazyFS
    crash at one of DAEMON_CRASH_POINTS at a random object of the flood (the cut lands
    exactly at that write or fsync); a crash that has not fired by the end of the flood
    falls back to kill + cut.  In even rounds the publisher restarts too, so that only
    sync can bring back what was lost (in odd rounds GossipSub may re-offer recent messages first);
    ``publisher_restarts`` True or False makes every round so.
    Measured: what the cut lost, restart -> caught up, and how the lost objects came
    back (from the node's log)."""
    from procnet import ProcNode, wait_for

    from rill.node import control
    from rill.protocol import messages as m
    from rill.wallet.inbox import subjects_of

    rng = random.Random(seed)
    figures = []
    for r in range(rounds):
        pub = ProcNode(base / f"r{r}", "publisher", END + 61)
        node = ProcNode(base / f"r{r}", "store", END + 61)
        node_home(pub.home, "publisher")
        db = fs.mnt / f"store{r}.db"
        node_home(node.home, "store", db=db)
        with Wallet.open(node.home) as w:
            me = w.identity
        objects, _ = gossip_objects(base / f"r{r}", me, donors)
        published = {m.decode(raw).id for raw in objects}
        ours = {m.decode(raw).id for raw in objects if me in subjects_of(m.decode(raw))}
        cut_at = rng.randrange(len(objects) // 3, len(objects) + 1)
        point = None
        if crash_share and rng.random() < crash_share:
            point = rng.choice(DAEMON_CRASH_POINTS)
        arm_at = rng.randrange(0, cut_at) if point else -1
        context = (f"seed {seed}, round {r} (cut after {cut_at} of {len(objects)} published"
                   + (f", crash armed at {point[0]} {point[1]} from object {arm_at})"
                      if point else ")"))
        fired = False
        try:
            pub.start([])
            pub.wait_started()
            node.start([pub.addr])
            node.wait_started()
            sock = pub.home / control.SOCKET_NAME
            wait_for(lambda s=sock: all(control.call(s, "status")["mesh"].values()), 30,
                     "the store node in the publisher's mesh")
            for k, raw in enumerate(objects[:cut_at]):
                if k == arm_at:
                    assert point is not None
                    fs.crash_at(point[0], from_rgx=point[1])
                control.call(sock, "publish", 60, objects=[raw.hex()])
                if point and fs.crashed():
                    fired = True
                    cut_at = k + 1  # the rest is published while the node is down
                    break
            if point and not fired:  # give the last write a moment to reach LazyFS
                wait_for_crash(fs, 1.0)
                fired = fs.crashed()
            assert node.proc is not None
            node.proc.kill()  # power cut: the process and the page cache go together
            node.proc.wait()
            node.proc = None
            if fired:
                # LazyFS died at the operation (its mount is dead): what the node had
                # stored is what its log says it stored
                before = {i: (2 if i in ours else 1) for i in stored_by_log(node.log,
                                                                               published)}
            else:
                if point:  # armed but never reached: disarm it by the reboot below
                    context += " (crash did not fire: kill + cut)"
                before = held(db)  # what it had committed (LazyFS still holds it in cache)
                fs.cut()
            fs.reboot()
            after = held(db)
            check = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            integrity = check.execute("PRAGMA integrity_check").fetchall()
            check.close()
            assert integrity == [("ok",)], f"{context}: integrity_check {integrity}"
            if fired:  # private rows (claims opened from sealed ones) are not logged
                after = {i: k for i, k in after.items() if i in published}
                # stored and killed before its log line was written: held all the same
                before.update({i: k for i, k in after.items() if i not in before})
            assert after.keys() <= before.keys(), f"{context}: objects from nowhere"
            lost = before.keys() - after.keys()
            lost_own = {i for i in lost if before[i] == 2}
            restart = r % 2 == 0 if publisher_restarts is None else publisher_restarts
            if restart:
                # the publisher restarts too: GossipSub cannot re-offer its recent
                # messages, so whatever comes back comes by sync
                pub.stop()
                pub.start([])
                pub.wait_started()
            for raw in objects[cut_at:]:  # the network goes on while the node is down
                control.call(sock, "publish", 60, objects=[raw.hex()])
            (node.home / control.SOCKET_NAME).unlink(missing_ok=True)  # left by the kill
            log_from = node.log.stat().st_size
            t0 = time.monotonic()
            node.start([pub.addr])
            node.wait_started()
            started = time.monotonic() - t0
            wait_for(lambda ours=ours, db=db: ours <= held(db).keys(), 60,
                     f"{context}: sync to bring back every object concerning the node")
            caught_up = time.monotonic() - t0
            # the first sync with the publisher has ended (it may end after the last object
            # came): then the daemon's counter says how many objects sync brought
            nsock = node.home / control.SOCKET_NAME
            wait_for(lambda s=nsock: any(p["last_sync"] is not None
                                         for p in control.call(s, "peers")), 30,
                     f"{context}: the first sync after the restart to end")
            synced = control.call(nsock, "status")["counters"]["synced"]
            # others' objects come back by reconciliation (SPEC §11.4) with the publisher
            relay = before.keys() & published
            wait_for(lambda relay=relay, db=db: relay <= held(db).keys(), 60,
                     f"{context}: reconciliation to bring back every relay copy")
            relay_back = time.monotonic() - t0
            relay_missing = (before.keys() - held(db).keys())
            assert not relay_missing & published, f"{context}: relay copies lost for good"
            with Wallet.open(node.home) as w:
                w.verify_log()
            via = came_back_by(node.log, log_from, lost)
        finally:
            for n in (node, pub):
                if n.proc is not None:
                    n.stop()
        # rows lost include the claims the node opened from sealed ones (private, never
        # gossiped: they come back with the sealed claim); "lost_published" counts objects
        figures.append({"crash": f"{point[0]} {point[1]}" if fired and point else "cut",
                        "objects": len(objects), "held": len(before), "lost": len(lost),
                        "held_published": len(before.keys() & published),
                        "lost_published": len(lost & published),
                        "lost_ours": len(lost & ours),
                        "lost_own": len(lost_own), "relay_missing": len(relay_missing),
                        "started_s": started, "caught_up_s": caught_up, "ours": len(ours),
                        "relay_back_s": relay_back,
                        "by_sync": via.get("sync", 0), "by_gossip": via.get("gossip", 0),
                        "synced": synced})
        print(f"\ngossip round {r} ({context}): the node held {len(before)} objects, the cut "
              f"lost {len(lost)} ({len(lost_own)} concerning it); restart -> started "
              f"{started:.2f} s, -> all {len(ours)} objects concerning it held (sync) "
              f"{caught_up:.2f} s; of the lost objects {via.get('sync', 0)} came back by sync, "
              f"{via.get('gossip', 0)} by gossip re-offered; every relay copy back (reconciliation) "
              f"{relay_back:.2f} s")
    return figures


def wait_for_crash(fs: LazyFS, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not fs.crashed() and time.monotonic() < deadline:
        time.sleep(0.01)

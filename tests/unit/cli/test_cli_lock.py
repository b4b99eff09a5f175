"""`senate lock`: a KV lock or semaphore held by a session while a child runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from agent_double import Served

from agent.cli import dispatch
from agent.cli.lock import Holder, LockError, LockInUse
from agent.client import HTTPClient

pytestmark = pytest.mark.timeout(60)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = dispatch(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_lock_runs_the_child_and_releases(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    rc, out, err = run(
        capsys,
        "lock",
        f"-http-addr={served.http_addr}",
        "-verbose",
        "jobs/backup",
        f"echo held > {marker}",
    )
    assert (rc, err) == (0, "")
    assert out == "Attempting lock acquisition\nStarting handler\nCleanup succeeded\n"
    assert marker.read_text() == "held\n"
    # cleaned up as api.Lock.Destroy does: nobody else held it, so the key is gone
    assert served.agent.state.kvs_get("jobs/backup/.lock")[1] is None
    assert served.agent.state.session_list()[1] == []  # destroyed on the way out


def test_destroy_leaves_a_lock_someone_holds(served: Served) -> None:
    holder = Holder(HTTPClient(served.http_addr), "held", 1, "holder", None)
    holder.create_session()
    assert holder.acquire(None)
    other = Holder(HTTPClient(served.http_addr), "held", 1, "other", None)
    with pytest.raises(LockInUse, match=r"^Lock in use$"):
        other.destroy()
    entry = served.agent.state.kvs_get("held/.lock")[1]
    assert entry is not None and entry["Session"] == holder.session
    holder.release()
    other.destroy()  # released: now it goes
    assert served.agent.state.kvs_get("held/.lock")[1] is None
    other.destroy()  # nothing left to delete: not an error


def test_destroy_refuses_a_key_that_is_not_a_lock(served: Served) -> None:
    client = HTTPClient(served.http_addr)
    client.request("PUT", "/v1/kv/plain/.lock", body=b"mine")
    with pytest.raises(LockError, match=r"^Existing key does not match lock use$"):
        Holder(client, "plain", 1, "x", None).destroy()
    with pytest.raises(LockError, match=r"^Existing key does not match semaphore use$"):
        Holder(client, "plain", 2, "x", None).destroy()
    assert served.agent.state.kvs_get("plain/.lock")[1] is not None


def test_semaphore_cleanup_aborts_while_another_holder_remains(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Holder(HTTPClient(served.http_addr, timeout=10), "pool", 2, "other", None)
    other.create_session()
    assert other.acquire(None)
    rc, out, err = run(
        capsys, "lock", f"-http-addr={served.http_addr}", "-n=2", "-verbose=true", "pool", "true"
    )
    assert (rc, err) == (0, "")
    assert out == "Attempting lock acquisition\nStarting handler\nCleanup aborted, lock in use\n"
    assert served.agent.state.kvs_get("pool/.lock")[1] is not None
    other.release()
    other.destroy_session()
    rc, out, _ = run(
        capsys, "lock", f"-http-addr={served.http_addr}", "-n=2", "-verbose", "pool", "true"
    )
    assert rc == 0 and out.endswith("Cleanup succeeded\n")
    assert served.agent.state.kvs_get("pool/.lock")[1] is None


def test_lock_passes_the_childs_exit_code(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "lock", f"-http-addr={served.http_addr}", "p", "exit 7")[0] == 7


def test_try_gives_up_while_another_session_holds_it(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Holder(HTTPClient(served.http_addr), "busy", 1, "other", None)
    other.create_session()
    assert other.acquire(None)
    start = time.monotonic()
    rc, _, err = run(capsys, "lock", f"-http-addr={served.http_addr}", "-try=300ms", "busy", "true")
    assert (rc, err) == (1, "Shutdown triggered or timeout during lock acquisition\n")
    assert time.monotonic() - start < 5
    rc, _, err = run(capsys, "lock", f"-http-addr={served.http_addr}", "busy")
    assert (rc, err) == (1, "Command must be specified\n")


def test_semaphore_admits_n_holders(served: Served) -> None:
    def holder(name: str) -> Holder:
        h = Holder(HTTPClient(served.http_addr, timeout=10), "sem", 2, name, None)
        h.create_session()
        return h

    a, b, c = holder("a"), holder("b"), holder("c")
    assert a.acquire(None) and b.acquire(None)
    assert not c.acquire(time.monotonic() + 0.3)  # full
    a.release()
    assert c.acquire(time.monotonic() + 5)
    rc = dispatch(["lock", f"-http-addr={served.http_addr}", "-n=3", "sem", "true"])
    assert rc == 1  # limit conflict with the existing semaphore of 2


def test_losing_the_lock_is_noticed(served: Served) -> None:
    h = Holder(HTTPClient(served.http_addr, timeout=10), "lost", 1, "me", None)
    h.create_session()
    assert h.acquire(None)
    noticed = threading.Event()
    watcher = threading.Thread(
        target=h.monitor, args=(HTTPClient(served.http_addr), noticed.set), daemon=True
    )
    watcher.start()
    args = {"Datacenter": "mydc", "Op": "destroy", "Session": {"ID": h.session}}
    served.call(served.agent.rpc("Session.Apply", args))
    assert noticed.wait(10), "the monitor did not notice the lost lock"
    assert h.lost.is_set()

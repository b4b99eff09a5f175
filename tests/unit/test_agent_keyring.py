"""agent/agent.py keyring files: -encrypt is persisted; a keyring file outlives -encrypt."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from agent.agent import Agent, StartError
from agent.config import load

K1 = base64.b64encode(b"1" * 16).decode()
K2 = base64.b64encode(b"2" * 16).decode()


def test_encrypt_is_persisted_and_file_wins_on_restart(tmp_path: Path) -> None:
    agent = Agent(load([f"-data-dir={tmp_path}", f"-encrypt={K1}", "-bind=127.0.0.1"]))
    ring = agent._make_keyring(wan=False)
    assert ring is not None and ring.primary == b"1" * 16
    path = tmp_path / "serf" / "local.keyring"
    assert json.loads(path.read_text()) == [K1]
    ring.install(b"2" * 16)
    ring.use(b"2" * 16)
    agent._persist_keyring(ring, wan=False)
    assert json.loads(path.read_text())[0] == K2
    again = Agent(load([f"-data-dir={tmp_path}", f"-encrypt={K1}", "-bind=127.0.0.1"]))
    assert again._make_keyring(wan=False).primary == b"2" * 16


def test_corrupt_keyring_file_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "serf").mkdir()
    (tmp_path / "serf" / "local.keyring").write_text("{not json")
    agent = Agent(load([f"-data-dir={tmp_path}", "-bind=127.0.0.1"]))
    with pytest.raises(StartError, match="bad keyring file"):
        agent._make_keyring(wan=False)


def test_no_encryption_without_key_or_file(tmp_path: Path) -> None:
    agent = Agent(load([f"-data-dir={tmp_path}", "-bind=127.0.0.1"]))
    assert agent._make_keyring(wan=False) is None

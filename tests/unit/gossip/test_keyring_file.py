"""Keyring files: -encrypt is persisted; a keyring file outlives -encrypt; a corrupt one stops
the agent from starting, naming the file."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from pathlib import Path

import pytest

from agent.agent import Agent, StartError
from agent.config import load
from agent.gossip.keyring import KeyringError, load_keyring_file, save_keyring_file

K1 = base64.b64encode(b"1" * 16).decode()
K2 = base64.b64encode(b"2" * 16).decode()


def test_encrypt_is_persisted_and_file_wins_on_restart(tmp_path: Path) -> None:
    path = tmp_path / "serf" / "local.keyring"
    ring = load_keyring_file(path, K1)
    assert ring is not None and ring.primary == b"1" * 16
    assert json.loads(path.read_text()) == [K1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring.install(b"2" * 16)
    ring.use(b"2" * 16)
    save_keyring_file(path, ring)
    assert json.loads(path.read_text()) == [K2, K1]
    again = load_keyring_file(path, K1)
    assert again is not None and again.primary == b"2" * 16
    assert sorted(p.name for p in path.parent.iterdir()) == ["local.keyring"]


def test_corrupt_keyring_file_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "serf").mkdir()
    (tmp_path / "serf" / "local.keyring").write_text("{not json")
    with pytest.raises(KeyringError, match=r"bad keyring file .*local\.keyring"):
        load_keyring_file(tmp_path / "serf" / "local.keyring")
    agent = Agent(load([f"-data-dir={tmp_path}", "-bind=127.0.0.1", "-node=n1"]))
    with pytest.raises(StartError, match="Error starting agent: bad keyring file"):
        asyncio.run(agent.start())


def test_no_encryption_without_key_or_file(tmp_path: Path) -> None:
    assert load_keyring_file(tmp_path / "serf" / "local.keyring") is None
    assert not (tmp_path / "serf").exists()
    assert load_keyring_file(None) is None

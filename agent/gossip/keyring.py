"""The gossip keyring and AES-GCM packet encryption (memberlist keyring.go + security.go),
and the keyring queries that list or change it across the pool (serf keymanager.go and
internal_query.go: `keyring_request` asks, `answer_keyring_query` answers).

Every gossip packet and stream is sealed with the primary key as
`version(1) | nonce(12) | ciphertext+tag`; decryption tries every installed key, so a key
can be rotated with install -> use -> remove. Keys are 16 or 32 raw bytes (AES-128/256),
written as base64 as Consul's `encrypt` option and `keygen` do.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.fsutil import write_atomic
from agent.gossip.messages import BadMessage, unpack

log = logging.getLogger("agent")

ENCRYPTION_VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16
#: Bytes added to every sealed message.
OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
KEY_SIZES = (16, 24, 32)
#: The internal serf queries (`_serf_<op>`) that list or change every member's keyring.
KEYRING_QUERIES = ("install-key", "use-key", "remove-key", "list-keys")


class KeyringError(Exception):
    """A key that is malformed, missing, or may not be removed."""


class DecryptError(Exception):
    """No installed key opens the message (wrong key, tampered or truncated)."""


def decode_key(text: str) -> bytes:
    """A base64 key as given to `-encrypt`; raises KeyringError with what is wrong."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyringError(f"Failed to decode encryption key: {exc}") from exc
    if len(raw) not in KEY_SIZES:
        raise KeyringError(
            f"Invalid key size: key must be 16, 24 or 32 bytes, got {len(raw)} bytes"
        )
    return raw


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def generate_key(size: int = 16) -> str:
    """A new random key, base64 (what `senate keygen` prints)."""
    return encode_key(os.urandom(size))


class Keyring:
    """Installed keys; the first is the primary key that seals outgoing messages."""

    def __init__(self, keys: list[bytes], primary: bytes | None = None) -> None:
        if not keys:
            raise KeyringError("keyring needs at least one key")
        self._keys: list[bytes] = []
        self._aead: dict[bytes, AESGCM] = {}
        for key in keys:
            self.install(key)
        self.use(primary if primary is not None else keys[0])

    @classmethod
    def from_base64(cls, keys: list[str]) -> Keyring:
        return cls([decode_key(k) for k in keys])

    def install(self, key: bytes) -> None:
        if len(key) not in KEY_SIZES:
            raise KeyringError(f"Invalid key size: {len(key)} bytes")
        if key not in self._aead:
            self._keys.append(key)
            self._aead[key] = AESGCM(key)

    def use(self, key: bytes) -> None:
        if key not in self._aead:
            raise KeyringError("Requested key is not in the keyring")
        self._keys.remove(key)
        self._keys.insert(0, key)

    def remove(self, key: bytes) -> None:
        if key == self._keys[0]:
            raise KeyringError("Removing the primary key is not allowed")
        if key in self._aead:
            self._keys.remove(key)
            del self._aead[key]

    def list_keys(self) -> list[bytes]:
        return list(self._keys)

    @property
    def primary(self) -> bytes:
        return self._keys[0]

    def encrypt(self, plain: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._aead[self._keys[0]].encrypt(nonce, plain, aad or None)
        return bytes([ENCRYPTION_VERSION]) + nonce + sealed

    def decrypt(self, data: bytes, aad: bytes = b"") -> bytes:
        if len(data) < OVERHEAD:
            raise DecryptError("message too short to be encrypted")
        if data[0] != ENCRYPTION_VERSION:
            raise DecryptError(f"unsupported encryption version {data[0]}")
        nonce, sealed = data[1 : 1 + NONCE_SIZE], data[1 + NONCE_SIZE :]
        for key in self._keys:
            try:
                return self._aead[key].decrypt(nonce, sealed, aad or None)
            except Exception:  # cryptography raises InvalidTag
                continue
        raise DecryptError("No installed keys could decrypt the message")


@dataclass
class KeyringResponse:
    """Result of a keyring operation spread over the pool (serf KeyResponse)."""

    messages: dict[str, str] = field(default_factory=dict)  # node -> error message
    keys: dict[str, int] = field(default_factory=dict)  # base64 key -> nodes that have it
    num_nodes: int = 0
    num_resp: int = 0
    num_err: int = 0

    @property
    def error(self) -> str:
        """What serf's key manager returns as the error of the operation ("" for none)."""
        if self.num_err:
            return f"{self.num_err}/{self.num_nodes} nodes reported failure"
        if self.num_resp != self.num_nodes:
            return f"{self.num_resp}/{self.num_nodes} nodes reported success"
        return ""


def keyring_request(key: str | None) -> bytes:
    return msgpack.packb({"Key": key or ""}, use_bin_type=True)


def parse_keyring_response(data: bytes) -> tuple[bool, str, list[str]]:
    try:
        resp = unpack(data)
        keys = resp.get("Keys", [])
        return bool(resp["Result"]), str(resp.get("Message", "")), [str(k) for k in keys]
    except (BadMessage, KeyError, TypeError, ValueError, AttributeError):
        return False, "malformed keyring response", []


def answer_keyring_query(keyring: Keyring | None, op: str, payload: bytes) -> dict[str, Any]:
    """Carry out keyring query `op` (one of KEYRING_QUERIES) on this member's keyring; the
    answer is the map `parse_keyring_response` reads: Result, Message and Keys (base64)."""
    result: dict[str, Any] = {"Result": False, "Message": "", "Keys": []}
    if keyring is None:  # serf's words for a list and for a change
        result["Message"] = (
            "Keyring is empty (encryption not enabled)"
            if op == "list-keys"
            else "No keyring to modify (encryption not enabled)"
        )
        return result
    try:
        if op == "list-keys":
            pass
        else:
            req = unpack(payload)
            key = decode_key(req["Key"])
            if op == "install-key":
                keyring.install(key)
            elif op == "use-key":
                keyring.use(key)
            else:
                keyring.remove(key)
        result["Result"] = True
        result["Keys"] = [encode_key(k) for k in keyring.list_keys()]
    except (
        KeyringError,
        BadMessage,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
    ) as exc:
        result["Message"] = str(exc)
    return result


def load_keyring_file(path: Path | None, encrypt: str = "") -> Keyring | None:
    """The keyring an agent starts with: from `path` (<data_dir>/serf/*.keyring) when it
    exists — it outlives `-encrypt`, as keys may have been rotated since — else from the
    base64 `encrypt` key, then saved to `path`; None without either. A file that is not a
    JSON list of base64 keys is a KeyringError naming it."""
    if path is not None and path.exists():
        try:
            keys = json.loads(path.read_text())
            if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
                raise ValueError("expected a JSON list of base64 keys")
            ring = Keyring([base64.b64decode(k, validate=True) for k in keys])
        except (OSError, ValueError, binascii.Error) as exc:
            raise KeyringError(f"bad keyring file {path}: {exc}") from None
        if encrypt:
            log.warning("loaded keyring from file; ignoring -encrypt (%s)", path)
        return ring
    if not encrypt:
        return None
    key = base64.b64decode(encrypt)
    ring = Keyring([key], key)
    save_keyring_file(path, ring)
    return ring


def save_keyring_file(path: Path | None, ring: Keyring | None) -> None:
    """Write the keys, primary first, where `load_keyring_file` finds them."""
    if path is None or ring is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps([encode_key(k) for k in ring.list_keys()]), mode=0o600)

"""The agent's own tokens (Consul's token.Store): `default` (requests that carry none, and
DNS), `agent` (the agent's internal requests: anti-entropy, coordinates, remote exec; the
default token when unset), `config_file_service_registration` (the config files' services
and checks) and `agent_recovery` (agent endpoints when the servers cannot be
reached). They come from `acl.tokens` and can be replaced at run time by
`PUT /v1/agent/token/<kind>`; with `acl.enable_token_persistence` those replacements are
written to <data_dir>/acl-tokens.json (mode 0600) and win over the config at the next start.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from agent.fsutil import write_atomic

log = logging.getLogger("agent")

#: /v1/agent/token/<kind>: the 1.x names and the older ones they replaced
KINDS = {
    "default": "default",
    "acl_token": "default",
    "agent": "agent",
    "acl_agent_token": "agent",
    "agent_recovery": "agent_recovery",
    "agent_master": "agent_recovery",
    "acl_agent_master_token": "agent_recovery",
    "replication": "replication",
    "acl_replication_token": "replication",
    "config_file_service_registration": "config_file_service_registration",
}
TOKEN_FILE = "acl-tokens.json"


class TokenStore:
    def __init__(
        self,
        *,
        default: str = "",
        agent: str = "",
        agent_recovery: str = "",
        config_file_service_registration: str = "",
        persist_dir: Path | None = None,
    ) -> None:
        self._tokens = {
            "default": default,
            "agent": agent,
            "agent_recovery": agent_recovery,
            "replication": "",
            "config_file_service_registration": config_file_service_registration,
        }
        self._persist_dir = persist_dir
        if persist_dir is not None:
            self._load(persist_dir / TOKEN_FILE)

    def _load(self, path: Path) -> None:
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("agent: unable to load persisted tokens from %s: %s", path, exc)
            return
        if isinstance(saved, dict):
            for name in self._tokens:
                value = saved.get(name)
                if isinstance(value, str) and value:
                    self._tokens[name] = value

    def user_token(self) -> str:
        return self._tokens["default"]

    def agent_token(self) -> str:
        return self._tokens["agent"] or self._tokens["default"]

    def agent_recovery_token(self) -> str:
        return self._tokens["agent_recovery"]

    def config_file_registration_token(self) -> str:
        """What the config files' services and checks sync with when they name no token
        (acl.tokens.config_file_service_registration; else the agent's own tokens)."""
        return self._tokens["config_file_service_registration"]

    def set(self, kind: str, value: str) -> None:
        """Set a token by its /v1/agent/token kind; KeyError for a kind that does not exist."""
        name = KINDS[kind]
        self._tokens[name] = value
        if self._persist_dir is not None:
            path = self._persist_dir / TOKEN_FILE
            saved = {n: v for n, v in self._tokens.items() if v}
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(saved), mode=0o600)

"""What the agent registers for its own node and how: services and checks from config files and
from the agent HTTP API, their check runners, maintenance mode, persistence, reaping.

`LocalRegistry` is Consul's Agent.AddService / AddCheck / RemoveService / RemoveCheck /
updateTTLCheck / Enable*Maintenance in one place. It validates a whole registration before it
changes anything (a refused request leaves no trace), writes the result into `LocalState` (so
anti-entropy pushes it to the catalog), starts one runner per check (agent/local/checks.py) and
receives their results.

Persistence as Consul's: what the HTTP API registers is written under <data_dir>/services/ and
<data_dir>/checks/ (one JSON file each, named by the md5 of the ID, written atomically), TTL
check results under <data_dir>/checks/state/, and all of it is loaded again at start. Config
file definitions are never persisted: the files are their source, and `reload` re-reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.fsutil import TMP_SUFFIX, write_atomic
from agent.local.checks import (
    BUF_SIZE,
    CRITICAL,
    PASSING,
    SCRIPTS_DISABLED,
    CheckDecodeError,
    CheckInvalidError,
    CheckType,
    IntervalRunner,
    Notify,
    TTLRunner,
    make_runner,
    normalise_key,
    parse_check_type,
)
from agent.local.state import LocalState
from agent.metadata import meta_problem
from agent.tasks import cancel_and_wait

log = logging.getLogger("agent")

SERVICE_MAINT_PREFIX = "_service_maintenance:"
NODE_MAINT = "_node_maintenance"
DEFAULT_SERVICE_MAINT_REASON = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)
DEFAULT_NODE_MAINT_REASON = (
    "Maintenance mode is enabled for this node, but no reason was provided. "
    "This is a default message."
)
#: Consul's CheckReapInterval and CheckDeregisterIntervalMin.
REAP_INTERVAL = 30.0
MIN_DEREGISTER_AFTER = 60.0


class RegistrationError(Exception):
    """A registration refused; `status` is the HTTP status, `message` Consul's wording."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def unknown_check(check_id: str) -> RegistrationError:
    return RegistrationError(
        404,
        f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.',
    )


def unknown_service(service_id: str) -> RegistrationError:
    return RegistrationError(
        404,
        f'Unknown service ID "{service_id}". Ensure that the service ID is passed, '
        "not the service name.",
    )


# ---------------------------------------------------------------------------------------
# definitions: JSON (HTTP PascalCase or config snake_case) -> NodeService + CheckTypes
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    service: dict[str, Any]  # a NodeService
    checks: tuple[CheckType, ...]
    #: the definition's own ACL token (`token`): the service and its checks sync with it
    token: str = ""


DECODE_FAILED = "Request decode failed: "


def _decode_error(message: str) -> RegistrationError:
    return RegistrationError(400, DECODE_FAILED + message)


def parse_service(raw: Any) -> ServiceDefinition:
    """A service definition -> ServiceDefinition, validated as Consul's agent endpoint does;
    raises RegistrationError(400) with Consul's message."""
    if not isinstance(raw, dict):
        raise _decode_error("expected a JSON object")
    fields = {normalise_key(str(k)): v for k, v in raw.items()}

    def text(key: str, label: str) -> str:
        value = fields.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise _decode_error(f"{label}: expected a string, got {json.dumps(value)}")
        return value

    name = text("name", "Name")
    if not name:
        raise RegistrationError(400, "Missing service name")
    sid = text("id", "ID") or name
    address = text("address", "Address")
    if address in ("0.0.0.0", "::", "[::]"):
        raise RegistrationError(400, "Invalid service address")
    tags = fields.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise _decode_error("Tags: expected a list of strings")
    port = fields.get("port") or 0
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise _decode_error(f"Port: expected an integer from 0 to 65535, got {json.dumps(port)}")
    meta = fields.get("meta") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise RegistrationError(400, "Invalid Service Meta: values must be strings")
    problem = meta_problem(meta)
    if problem:
        raise RegistrationError(400, f"Invalid Service Meta: {problem}")
    eto = fields.get("enabletagoverride", False)
    if not isinstance(eto, bool):
        raise _decode_error("EnableTagOverride: expected true or false")
    service = {
        "ID": sid,
        "Service": name,
        "Tags": list(tags),
        "Address": address,
        "Port": port,
        "Meta": {str(k): v for k, v in meta.items()},
        "EnableTagOverride": eto,
        "Weights": _weights(fields.get("weights")),
    }
    tagged = _tagged_addresses(fields.get("taggedaddresses"))
    if tagged:
        service["TaggedAddresses"] = tagged
    kind = text("kind", "Kind")
    if kind:
        if kind not in SERVICE_KINDS:
            raise RegistrationError(400, f"Invalid service kind: {kind!r}")
        service["Kind"] = kind
    raw_checks: list[Any] = []
    if fields.get("check") is not None:
        raw_checks.append(fields["check"])
    extra = fields.get("checks")
    if extra is not None:
        if not isinstance(extra, list):
            raise _decode_error("Checks: expected a list of check objects")
        raw_checks.extend(extra)
    checks: list[CheckType] = []
    for i, rc in enumerate(raw_checks):
        chk = _parse_check(rc)
        # Consul names a service's checks "service:<id>" (":<n>" when there are several).
        cid = chk.check_id or (
            f"service:{sid}" if len(raw_checks) == 1 else f"service:{sid}:{i + 1}"
        )
        chk = _replace(
            chk,
            check_id=cid,
            name=chk.name or f"Service '{name}' check",
            service_id=sid,
        )
        try:
            chk.validate()
        except CheckInvalidError as exc:
            raise RegistrationError(400, f"Invalid check: {exc}") from None
        checks.append(chk)
    return ServiceDefinition(service, tuple(checks), text("token", "Token"))


#: Consul 1.x's service kinds ("" is a typical service)
SERVICE_KINDS = (
    "connect-proxy",
    "mesh-gateway",
    "terminating-gateway",
    "ingress-gateway",
    "api-gateway",
)


def _weights(raw: Any) -> dict[str, int]:
    """Consul's service Weights: {Passing, Warning}, 1 and 1 by default; Passing >= 1."""
    if raw is None:
        return {"Passing": 1, "Warning": 1}
    if not isinstance(raw, dict):
        raise _decode_error("Weights: expected an object")
    w = {normalise_key(str(k)): v for k, v in raw.items()}
    out = {}
    for key, label in (("passing", "Passing"), ("warning", "Warning")):
        v = w.get(key, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise _decode_error(f"Weights.{label}: expected a non-negative integer")
        out[label] = v
    if out["Passing"] < 1:
        raise RegistrationError(400, "Passing must be greater than 0")
    return out


def _tagged_addresses(raw: Any) -> dict[str, dict[str, Any]]:
    """A service's TaggedAddresses: name -> {Address, Port} (Consul >= 1.5)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _decode_error("TaggedAddresses: expected an object")
    out: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        if not isinstance(value, dict):
            raise _decode_error(f"TaggedAddresses.{name}: expected an object")
        v = {normalise_key(str(k)): x for k, x in value.items()}
        addr, port = v.get("address", ""), v.get("port", 0)
        if not isinstance(addr, str) or isinstance(port, bool) or not isinstance(port, int):
            raise _decode_error(f"TaggedAddresses.{name}: expected Address and Port")
        out[str(name)] = {"Address": addr, "Port": port}
    return out


_DNS_LABEL = re.compile(r"[a-zA-Z0-9-]{1,63}")


def _parse_check(raw: Any) -> CheckType:
    try:
        return parse_check_type(raw)
    except CheckInvalidError as exc:
        raise RegistrationError(400, f"Invalid check: {exc}") from None
    except CheckDecodeError as exc:
        raise _decode_error(str(exc)) from None


def _replace(chk: CheckType, **changes: Any) -> CheckType:
    return dataclasses.replace(chk, **changes)


def parse_check(raw: Any, *, allow_untyped: bool = False) -> CheckType:
    """A check registration (/v1/agent/check/register, or a config file's `check`) ->
    CheckType with its ID defaulted to its name; raises RegistrationError(400)."""
    chk = _parse_check(raw)
    if not chk.name:
        raise RegistrationError(400, "Missing check name")
    if chk.status and chk.status not in (PASSING, "warning", CRITICAL):
        raise RegistrationError(400, "Bad check status")
    chk = _replace(chk, check_id=chk.check_id or chk.name)
    if allow_untyped and not chk.kind:
        return chk  # a config check nothing updates (accepted before checks ran)
    try:
        chk.validate()
    except CheckInvalidError as exc:
        raise RegistrationError(400, f"Invalid check: {exc}") from None
    return chk


def validate_config_service(raw: Any) -> None:
    """For agent/config.py: ValueError with the reason when a config service is invalid."""
    try:
        parse_service(raw)
    except RegistrationError as exc:
        raise ValueError(exc.message.removeprefix(DECODE_FAILED)) from None


def validate_config_check(raw: Any) -> None:
    """For agent/config.py: ValueError with the reason when a config check is invalid."""
    try:
        parse_check(raw, allow_untyped=True)
    except RegistrationError as exc:
        raise ValueError(exc.message.removeprefix(DECODE_FAILED)) from None


# ---------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------


def _file_name(ident: str) -> str:
    return hashlib.md5(ident.encode(), usedforsecurity=False).hexdigest()


def _persist(path: Path, obj: Any) -> None:
    """A service, check or check-state file: JSON, owner-only (it carries the ACL token), as
    Consul's writeFileAtomic writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(obj), mode=0o600)


@dataclass
class LocalRegistry:
    """Services and checks of this agent, with their runners (see the module docstring)."""

    state: LocalState
    data_dir: Path | None = None
    enable_script_checks: bool = False
    #: script checks allowed from config files only (Consul's enable_local_script_checks)
    enable_local_script_checks: bool = False
    min_interval: float = 1.0
    reap_interval: float = REAP_INTERVAL
    min_deregister_after: float = MIN_DEREGISTER_AFTER
    runners: dict[str, IntervalRunner | TTLRunner] = field(default_factory=dict)
    definitions: dict[str, CheckType] = field(default_factory=dict)
    critical_since: dict[str, float] = field(default_factory=dict)
    config_services: dict[str, ServiceDefinition] = field(default_factory=dict)
    config_checks: dict[str, CheckType] = field(default_factory=dict)
    #: the token the config files' services and checks sync with when they name none
    config_file_token: Callable[[], str] = lambda: ""
    _reaper: asyncio.Task[None] | None = None
    _owners: dict[str, object] = field(default_factory=dict)

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the reaper of services whose checks stay critical (needs a running loop)."""
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_loop(), name="check-reaper")

    async def stop(self) -> None:
        reaper, self._reaper = self._reaper, None
        await cancel_and_wait(reaper)
        runners, self.runners = list(self.runners.values()), {}
        for runner in runners:
            await runner.stop()

    def stats(self) -> dict[str, int]:
        """Counts for `senate info` (Consul's check_monitors, check_ttls, ...)."""
        kinds = [getattr(r, "kind", "") for r in self.runners.values()]
        return {
            "check_monitors": kinds.count("script"),
            "check_ttls": kinds.count("ttl"),
            "check_https": kinds.count("http"),
            "check_tcps": kinds.count("tcp"),
        }

    # ---- services -----------------------------------------------------------------------

    def add_service(
        self,
        definition: ServiceDefinition,
        *,
        persist: bool,
        from_config: bool = False,
        replace_existing_checks: bool = False,
        token: str = "",
    ) -> None:
        """Register (or replace) a service and its checks; all-or-nothing. `from_config`:
        the definition comes from a config file (enable_local_script_checks applies).
        The service's checks the new definition does not name stay, as in Consul 1.x,
        unless `replace_existing_checks` (?replace-existing-checks) says to drop them."""
        for chk in definition.checks:
            self._vet(chk, from_config=from_config)
        service = definition.service
        sid = service["ID"]
        token = definition.token or token
        keep = {c.check_id for c in definition.checks}
        # Re-registering keeps the checks' current results (Consul's snapshotCheckState), so a
        # client that registers again at start does not flap its service to critical.
        previous = {
            cid: (h.get("Status"), h.get("Output"))
            for cid, h in self.state.checks.items()
            if cid in keep and h.get("ServiceID") == sid
        }
        for cid, health in list(self.state.checks.items()):
            if (
                replace_existing_checks
                and health.get("ServiceID") == sid
                and cid not in keep
                and not cid.startswith(SERVICE_MAINT_PREFIX)
            ):
                self._remove_check(cid, persist=True)
        if not _DNS_LABEL.fullmatch(service["Service"]):
            log.warning(
                'Service name "%s" will not be discoverable via DNS due to invalid characters. '
                "Valid characters include all alpha-numerics and dashes.",
                service["Service"],
            )
        self.state.add_service(dict(service))
        self.state.set_token("service", sid, token)
        if persist and self.data_dir is not None:
            _persist(
                self.data_dir / "services" / _file_name(sid), {"Token": token, "Service": service}
            )
        for chk in definition.checks:
            self._add_check(chk, persist=persist, token=token)
        for cid, (status, output) in previous.items():
            if cid in self.state.checks and status:
                self.state.update_check(cid, str(status), str(output or ""))
                self._track_critical(cid, str(status))

    def remove_service(self, service_id: str, *, persist: bool = True) -> None:
        if service_id not in self.state.services:
            raise unknown_service(service_id)
        self.state.remove_service(service_id)
        if persist:
            self._purge("services", service_id)
        for cid, chk in list(self.state.checks.items()):
            if chk.get("ServiceID") == service_id:
                self._remove_check(cid, persist=persist)
        log.debug('removed service "%s"', service_id)

    # ---- checks -------------------------------------------------------------------------

    def add_check(self, chk: CheckType, *, persist: bool, token: str = "") -> None:
        self._vet(chk)
        if chk.service_id and chk.service_id not in self.state.services:
            raise RegistrationError(404, f'ServiceID "{chk.service_id}" does not exist')
        self._add_check(chk, persist=persist, token=token)

    def remove_check(self, check_id: str, *, persist: bool = True) -> None:
        if check_id not in self.state.checks:
            raise unknown_check(check_id)
        self._remove_check(check_id, persist=persist)

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        """pass/warn/fail/update of a TTL check: set its status and restart its TTL."""
        if check_id not in self.state.checks:
            raise unknown_check(check_id)
        runner = self.runners.get(check_id)
        if not isinstance(runner, TTLRunner):
            raise RegistrationError(500, f'CheckID "{check_id}" does not have associated TTL')
        if len(output) > BUF_SIZE:
            output = f"{output[:BUF_SIZE]} ... (captured {BUF_SIZE} of {len(output)} bytes)"
        runner.set_status(status, output)
        if self.data_dir is not None:
            try:
                _persist(
                    self.data_dir / "checks" / "state" / _file_name(check_id),
                    {
                        "CheckID": check_id,
                        "Output": output,
                        "Status": status,
                        "Expires": int(time.time() + runner.ttl),
                    },
                )
            except OSError as exc:
                raise RegistrationError(
                    500, f'failed persisting state for check "{check_id}": {exc}'
                ) from None

    def _vet(self, chk: CheckType, *, from_config: bool = False) -> None:
        allowed = self.enable_script_checks or (from_config and self.enable_local_script_checks)
        if chk.is_script and not allowed:
            raise RegistrationError(400, SCRIPTS_DISABLED)

    def _add_check(
        self,
        chk: CheckType,
        *,
        persist: bool,
        health: dict[str, Any] | None = None,
        token: str = "",
    ) -> None:
        cid = chk.check_id
        token = chk.token or token
        self.state.set_token("check", cid, token)
        old = self.runners.pop(cid, None)
        if old is not None:
            old.cancel()
        if health is None:
            health = {
                "Node": self.state.node_name,
                "CheckID": cid,
                "Name": chk.name,
                "Status": chk.status or CRITICAL,
                "Notes": chk.notes,
                "Output": "",
                "ServiceID": chk.service_id,
                "ServiceName": "",
            }
        self.state.add_check(health)
        self.definitions[cid] = chk
        self._track_critical(cid, str(health.get("Status")))
        runner = make_runner(cid, chk, self._notifier(cid), self.min_interval)
        if isinstance(runner, TTLRunner):
            remaining = None
            # A TTL result from before a restart that has not expired yet (Consul's
            # loadCheckState), for config and API checks alike.
            ttl_state = self._load_ttl_state(cid) if self.data_dir is not None else None
            if ttl_state is not None:
                remaining = max(0.0, float(ttl_state.get("Expires", 0)) - time.time())
                runner.last_output = str(ttl_state.get("Output") or "")
                self.state.update_check(
                    cid, str(ttl_state.get("Status") or CRITICAL), runner.last_output
                )
                self._track_critical(cid, str(ttl_state.get("Status")))
            runner.start(remaining)
        elif runner is not None:
            runner.start()
        if runner is not None:
            self.runners[cid] = runner
        if persist and self.data_dir is not None:
            _persist(
                self.data_dir / "checks" / _file_name(cid),
                {"Check": self.state.checks[cid], "ChkType": chk.to_json(), "Token": token},
            )

    def _add_plain_check(self, health: dict[str, Any], *, persist: bool) -> None:
        """A check with no runner (maintenance mode): its status is what we set."""
        cid = health["CheckID"]
        self.state.add_check(health)
        self._track_critical(cid, health["Status"])
        if persist and self.data_dir is not None:
            _persist(
                self.data_dir / "checks" / _file_name(cid),
                {"Check": self.state.checks[cid], "ChkType": None, "Token": ""},
            )

    def _remove_check(self, check_id: str, *, persist: bool) -> None:
        self.state.remove_check(check_id)
        runner = self.runners.pop(check_id, None)
        if runner is not None:
            runner.cancel()
        self.definitions.pop(check_id, None)
        self.critical_since.pop(check_id, None)
        self._owners.pop(check_id, None)
        if persist:
            self._purge("checks", check_id)
            self._purge("checks/state", check_id)
        log.debug('removed check "%s"', check_id)

    def _purge(self, kind: str, ident: str) -> None:
        if self.data_dir is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / kind / _file_name(ident)).unlink()

    def _track_critical(self, check_id: str, status: str) -> None:
        if status == CRITICAL:
            self.critical_since.setdefault(check_id, time.monotonic())
        else:
            self.critical_since.pop(check_id, None)

    def _notifier(self, check_id: str) -> Notify:
        """The callback of one runner: results of a runner since replaced or removed (one
        still finishing its probe) are dropped."""
        owner = object()
        self._owners[check_id] = owner

        def notify(check_id: str, status: str, output: str, message: str | None = None) -> None:
            if self._owners.get(check_id) is owner:
                self._on_result(check_id, status, output, message)

        return notify

    def _on_result(
        self, check_id: str, status: str, output: str, message: str | None = None
    ) -> None:
        """A runner's result -> LocalState, with Consul's log line when the status changes."""
        chk = self.state.checks.get(check_id)
        if chk is None:
            return
        changed = chk.get("Status") != status
        if changed:
            if message:
                log.warning("%s", message)
            elif status == PASSING:
                log.info("Check '%s' is passing", check_id)
            else:
                log.warning("Check '%s' is now %s", check_id, status)
        else:
            log.debug("Check '%s' is %s", check_id, status)
        # An output-only change waits for the next periodic sync (Consul's
        # check_update_interval), so a check whose output varies does not flood the servers.
        self.state.update_check(check_id, status, output, defer_output=not changed)
        self._track_critical(check_id, status)

    # ---- maintenance --------------------------------------------------------------------

    def enable_service_maintenance(self, service_id: str, reason: str) -> bool:
        service = self.state.services.get(service_id)
        if service is None:
            raise RegistrationError(404, f'No service registered with ID "{service_id}"')
        cid = SERVICE_MAINT_PREFIX + service_id
        if cid in self.state.checks:
            return False
        self._add_plain_check(
            {
                "Node": self.state.node_name,
                "CheckID": cid,
                "Name": "Service Maintenance Mode",
                "Status": CRITICAL,
                "Notes": reason or DEFAULT_SERVICE_MAINT_REASON,
                "Output": "",
                "ServiceID": service_id,
                "ServiceName": service["Service"],
            },
            persist=True,
        )
        log.info('Service "%s" entered maintenance mode', service_id)
        return True

    def disable_service_maintenance(self, service_id: str) -> bool:
        if service_id not in self.state.services:
            raise RegistrationError(404, f'No service registered with ID "{service_id}"')
        cid = SERVICE_MAINT_PREFIX + service_id
        if cid not in self.state.checks:
            return False
        self._remove_check(cid, persist=True)
        log.info('Service "%s" left maintenance mode', service_id)
        return True

    def enable_node_maintenance(self, reason: str) -> bool:
        if NODE_MAINT in self.state.checks:
            return False
        self._add_plain_check(
            {
                "Node": self.state.node_name,
                "CheckID": NODE_MAINT,
                "Name": "Node Maintenance Mode",
                "Status": CRITICAL,
                "Notes": reason or DEFAULT_NODE_MAINT_REASON,
                "Output": "",
                "ServiceID": "",
                "ServiceName": "",
            },
            persist=True,
        )
        log.info("Node entered maintenance mode")
        return True

    def disable_node_maintenance(self) -> bool:
        if NODE_MAINT not in self.state.checks:
            return False
        self._remove_check(NODE_MAINT, persist=True)
        log.info("Node left maintenance mode")
        return True

    # ---- config files and restart -------------------------------------------------------

    def load_config(self, services: Any, checks: Any) -> None:
        """Register the config files' services and checks (not persisted), replacing the
        previous config's: what is gone is removed, what changed is registered again, what
        is the same keeps running with its status. Raises RegistrationError."""
        new_services = {d.service["ID"]: d for d in (parse_service(s) for s in services)}
        new_checks = {c.check_id: c for c in (parse_check(c, allow_untyped=True) for c in checks)}
        for d in new_services.values():
            for chk in d.checks:
                self._vet(chk, from_config=True)
        kept = {sid for sid in self.state.services if sid not in self.config_services}
        for chk in new_checks.values():
            self._vet(chk, from_config=True)
            if chk.service_id and chk.service_id not in kept | set(new_services):
                raise RegistrationError(400, f'ServiceID "{chk.service_id}" does not exist')
        for sid in list(self.config_services):
            if sid not in new_services and sid in self.state.services:
                self.remove_service(sid, persist=False)
        for cid in list(self.config_checks):
            if cid not in new_checks and cid in self.state.checks:
                self._remove_check(cid, persist=False)
        for sid, d in new_services.items():
            if self.config_services.get(sid) != d or sid not in self.state.services:
                self.add_service(
                    d,
                    persist=False,
                    from_config=True,
                    replace_existing_checks=True,
                    token=self.config_file_token(),
                )
        for cid, chk in new_checks.items():
            if self.config_checks.get(cid) != chk or cid not in self.state.checks:
                self._add_check(chk, persist=False, token=self.config_file_token())
        self.config_services = new_services
        self.config_checks = new_checks

    def load_persisted(self) -> None:
        """Register what the HTTP API registered before a restart (config wins on a clash)."""
        if self.data_dir is None:
            return
        for path in sorted((self.data_dir / "services").glob("*")):
            if not path.is_file() or path.name.endswith(TMP_SUFFIX):
                continue
            try:
                wrapped_service = json.loads(path.read_bytes())
                service = dict(wrapped_service["Service"])
                service_token = str(wrapped_service.get("Token") or "")
                service["Name"] = service.pop("Service", "")  # NodeService -> definition
                definition = parse_service(service)
            except (OSError, ValueError, KeyError, TypeError, RegistrationError) as exc:
                log.error("failed decoding service file %s: %s", path, exc)
                continue
            sid = definition.service["ID"]
            if sid in self.state.services:
                log.debug('service "%s" exists, not restoring from file', sid)
                continue
            self.state.add_service(dict(definition.service))
            self.state.set_token("service", sid, service_token)
            log.debug('restored service definition "%s" from %s', sid, path)
        for path in sorted((self.data_dir / "checks").glob("*")):
            if not path.is_file() or path.name.endswith(TMP_SUFFIX):
                continue
            try:
                wrapped = json.loads(path.read_bytes())
                health = dict(wrapped["Check"])
                cid = str(health["CheckID"])
                raw_type = wrapped.get("ChkType")
                chk = None if raw_type is None else parse_check_type(raw_type)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("failed decoding check file %s: %s", path, exc)
                continue
            if cid in self.state.checks:
                log.debug('check "%s" exists, not restoring from file', cid)
                continue
            sid = str(health.get("ServiceID") or "")
            if sid and sid not in self.state.services:
                log.warning('check "%s" belongs to unknown service "%s"; not restored', cid, sid)
                continue
            if chk is None:
                self._add_plain_check(health, persist=False)
                continue
            try:
                self._vet(chk)
            except RegistrationError as exc:
                log.error('Failed to restore check "%s": %s', cid, exc.message)
                continue
            token = str(wrapped.get("Token") or "")
            self._add_check(chk, persist=False, health=health, token=token)
            log.debug('restored health check "%s" from %s', cid, path)

    def _load_ttl_state(self, check_id: str) -> dict[str, Any] | None:
        assert self.data_dir is not None
        path = self.data_dir / "checks" / "state" / _file_name(check_id)
        try:
            st = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning('failed restoring state for check "%s": %s', check_id, exc)
            return None
        if not isinstance(st, dict) or st.get("CheckID") != check_id:
            return None
        if float(st.get("Expires") or 0) <= time.time():
            return None  # expired while we were down: the check starts from its definition
        return st

    # ---- reaping ------------------------------------------------------------------------

    def reap(self, now: float | None = None) -> list[str]:
        """Deregister services with a check critical longer than its
        deregister_critical_service_after; returns the service IDs removed."""
        now = time.monotonic() if now is None else now
        reaped: list[str] = []
        for cid, since in list(self.critical_since.items()):
            chk = self.definitions.get(cid)
            if chk is None or chk.deregister_critical_service_after <= 0:
                continue
            sid = chk.service_id
            if not sid or sid in reaped or sid not in self.state.services:
                continue
            timeout = max(chk.deregister_critical_service_after, self.min_deregister_after)
            if now - since > timeout:
                self.remove_service(sid, persist=True)
                reaped.append(sid)
                log.info(
                    'Check "%s" for service "%s" has been critical for too long; '
                    "deregistered service",
                    cid,
                    sid,
                )
        return reaped

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            try:
                self.reap()
            except Exception as exc:
                log.error("failed to reap services: %s", exc)

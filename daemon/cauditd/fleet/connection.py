"""Connecting to NATS as the NATS tools do (credentials, NKey seed, token, TLS from files), and
making sure the stream cauditd publishes to exists with the settings the config asks for.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cauditd.config import ConfigError, FleetConfig, check_file_permissions
from cauditd.fleet.subjects import Subjects

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js.client import JetStreamContext

log = logging.getLogger(__name__)

HOSTS_SUFFIX = "_HOSTS"
HEARTBEAT_MAX_AGE_S = 7 * 86400.0


class FleetError(Exception):
    """A fleet set-up that cannot work (unreadable secret file, stream with other settings)."""


@dataclass(frozen=True, slots=True)
class Access:
    """Where the servers are and how to authenticate: the same for the daemon and cauditctl."""

    servers: tuple[str, ...]
    creds_file: str = ""
    nkey_file: str = ""
    token_file: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    @classmethod
    def of(cls, config: FleetConfig) -> Access:
        return cls(
            servers=tuple(config.servers), creds_file=config.creds_file,
            nkey_file=config.nkey_file, token_file=config.token_file,
            tls_ca_file=config.tls_ca_file, tls_cert_file=config.tls_cert_file,
            tls_key_file=config.tls_key_file,
        )  # fmt: skip

    def options(self) -> dict[str, Any]:
        """Keyword arguments of nats.connect for these credentials; FleetError if unreadable."""
        options: dict[str, Any] = {"servers": list(self.servers)}
        self.check_files()
        if self.creds_file:
            options["user_credentials"] = self.creds_file
        if self.nkey_file:
            options["nkeys_seed"] = self.nkey_file
        if self.token_file:
            options["token"] = _first_line(self.token_file)
        if self.tls_ca_file or self.tls_cert_file:
            options["tls"] = self.tls_context()
        return options

    def check_files(self) -> None:
        """Refuse a credential file that is missing, or that another user could change (a CA
        certificate someone else can rewrite lets them stand in for the servers) or read (the
        secrets); FleetError says which and why."""
        secrets = (self.creds_file, self.nkey_file, self.token_file, self.tls_key_file)
        for path in (*secrets, self.tls_ca_file, self.tls_cert_file):
            if not path:
                continue
            if not Path(path).is_file():
                raise FleetError(f"fleet: {path}: no such file")
            try:
                check_file_permissions(path, "a NATS credential file", secret=path in secrets)
            except ConfigError as exc:
                raise FleetError(f"fleet: {exc}") from None

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.tls_ca_file or None)
        if self.tls_cert_file:
            try:
                context.load_cert_chain(self.tls_cert_file, self.tls_key_file or None)
            except (OSError, ssl.SSLError) as exc:
                raise FleetError(f"fleet: client certificate {self.tls_cert_file}: {exc}") from None
        return context


def _first_line(path: str) -> str:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise FleetError(f"fleet: {path}: {exc.strerror}") from None
    return lines[0].strip() if lines else ""


async def connect(access: Access, *, name: str, forever: bool, **extra: Any) -> NatsClient:
    """A connection; `forever`: keep trying (the daemon), else fail after one round (cauditctl)."""
    import nats

    options = access.options()
    options.update(
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1 if forever else 2,
        reconnect_time_wait=1,
        connect_timeout=2,
        **extra,
    )
    if not forever:
        options["allow_reconnect"] = False
    return await nats.connect(**options)


@dataclass(slots=True)
class StreamSpec:
    """The stream settings the config asks for, compared field by field with the server's."""

    name: str
    subjects: list[str]
    replicas: int
    max_age_s: float
    max_bytes: int
    duplicate_window_s: float
    storage: str
    max_msgs_per_subject: int = -1
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def findings(cls, config: FleetConfig) -> StreamSpec:
        if config.storage not in ("file", "memory"):
            raise FleetError(f'fleet.storage must be "file" or "memory", not {config.storage!r}')
        return cls(
            name=config.stream, subjects=Subjects(config.subject_prefix).stream_subjects(),
            replicas=config.replicas, max_age_s=config.max_age_days * 86400.0,
            max_bytes=config.max_bytes, duplicate_window_s=config.duplicate_window_s,
            storage=config.storage,
        )  # fmt: skip

    @classmethod
    def heartbeats(cls, config: FleetConfig) -> StreamSpec:
        """The newest heartbeat of each host (`cauditctl fleet hosts`) and its newest report on
        each rules bucket (`cauditctl fleet rules status`)."""
        subjects = Subjects(config.subject_prefix)
        return cls(
            name=config.stream + HOSTS_SUFFIX,
            subjects=[subjects.heartbeat("*"), subjects.rules_status("*") + ".*"],
            replicas=config.replicas, max_age_s=HEARTBEAT_MAX_AGE_S, max_bytes=-1,
            duplicate_window_s=min(120.0, config.duplicate_window_s), storage=config.storage,
            max_msgs_per_subject=1,
        )  # fmt: skip

    def stream_config(self) -> Any:
        from nats.js import api

        return api.StreamConfig(
            name=self.name, subjects=list(self.subjects), num_replicas=self.replicas,
            max_age=self.max_age_s or None, max_bytes=self.max_bytes,
            duplicate_window=self.duplicate_window_s,
            storage=api.StorageType(self.storage), retention=api.RetentionPolicy.LIMITS,
            max_msgs_per_subject=self.max_msgs_per_subject,
        )  # fmt: skip

    def mismatches(self, actual: Any) -> list[str]:
        """What differs between the server's StreamConfig and this spec, one line per setting."""
        have = {
            "subjects": sorted(actual.subjects or []),
            "replicas": actual.num_replicas or 1,
            "max_age_s": float(actual.max_age or 0),
            "max_bytes": actual.max_bytes if actual.max_bytes is not None else -1,
            "duplicate_window_s": float(actual.duplicate_window or 0),
            "storage": getattr(actual.storage, "value", actual.storage),
            "retention": getattr(actual.retention, "value", actual.retention),
            "max_msgs_per_subject": actual.max_msgs_per_subject,
        }
        want = {
            "subjects": sorted(self.subjects), "replicas": self.replicas,
            "max_age_s": float(self.max_age_s), "max_bytes": self.max_bytes,
            "duplicate_window_s": float(self.duplicate_window_s), "storage": self.storage,
            "retention": "limits", "max_msgs_per_subject": self.max_msgs_per_subject,
        }  # fmt: skip
        return [f"{key}: the stream has {have[key]!r}, the config asks for {want[key]!r}"
                for key in want if have[key] != want[key]]


async def ensure_stream(js: JetStreamContext, spec: StreamSpec, *, create: bool) -> str:
    """Create the stream, or check the existing one; FleetError names every differing setting.

    Returns "created" or "checked".
    """
    from nats.js.errors import NotFoundError

    try:
        info = await js.stream_info(spec.name)
    except NotFoundError:
        if not create:
            raise FleetError(
                f"fleet: stream {spec.name} does not exist and fleet.create_stream is false"
            ) from None
        await js.add_stream(spec.stream_config())
        log.info("fleet: created stream %s (%s, %d replica(s))", spec.name,
                 ", ".join(spec.subjects), spec.replicas)
        return "created"
    problems = spec.mismatches(info.config)
    if problems:
        raise FleetError(
            f"fleet: stream {spec.name} exists with other settings; change the stream (nats "
            "stream edit) or the [fleet] config: " + "; ".join(problems)
        )
    return "checked"

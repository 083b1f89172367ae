"""The daemon's configuration: one TOML file, every key optional, checked against dataclasses.

Each section is a dataclass; its fields are the keys, their annotations the accepted types, and
their `doc` metadata the text `docs/configuration.md` carries. Unknown keys and wrong types raise
`ConfigError` naming the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_PATH = Path("/etc/cauditd/cauditd.toml")


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


def doc(text: str, **kwargs: Any) -> Any:
    """A dataclass field carrying its documentation."""
    return field(metadata={"doc": text}, **kwargs)


@dataclass(slots=True, kw_only=True)
class DaemonConfig:
    state_dir: str = doc(
        "Where findings, the alert outbox and state live.", default="/var/lib/cauditd"
    )
    log_level: str = doc("debug, info, warning or error.", default="info")
    log_format: str = doc(
        '"text" (one line per record) or "json" (one object per line).', default="text"
    )
    hostname: str = doc("Host name put on findings; empty means the system's.", default="")


@dataclass(slots=True, kw_only=True)
class ProbesConfig:
    enabled: bool = doc(
        "Attach the syscall probes. Off only for API-only test set-ups.", default=True
    )
    all_syscalls: bool = doc(
        "Emit every syscall the probes know, not only those the loaded rules use "
        "(what `cauditd events` does; costs more).",
        default=False,
    )
    kernel_filters: bool = doc(
        "Drop in the kernel the opens, connects, dups and sockets no loaded rule can match, "
        "judged by what the rules' conditions ask of them: path (prefixes, exact paths, file "
        "names) and read/write mode of opens, destination port and network of connects and "
        "sendtos, whether a dup onto fd 0-2 duplicates a socket, the address family of a new "
        "socket and whether it landed on fd 0-2. "
        "Off: every call of a needed syscall reaches user space.",
        default=True,
    )
    kernel_structs: bool = doc(
        "Read the running kernel's own structs (their layout from its BTF, "
        "/sys/kernel/btf/vmlinux): an open's fd.name is the file the kernel opened (symlinks, "
        "dirfd, cwd, /proc/<pid>/root resolved), an exec's exe the file it runs, dups know "
        "what fd they place, and 32-bit int 0x80 syscalls are recognised. Off, or without "
        "BTF: paths as written and x86_64 syscall numbers only.",
        default=True,
    )
    track_host: bool = doc(
        "Also report processes outside containers (container.id = host).", default=False
    )
    ringbuf_pages: int = doc("Ring buffer size in pages per probe (a power of two).", default=4096)
    poll_interval_ms: int = doc(
        "How often the ring buffers are drained while records flow, in milliseconds; four "
        "times that while they trickle (a drain found fewer than 64), backing off to 20 ms "
        "while none arrive.", default=2
    )
    ringbuf_mmap: bool = doc(
        "Read the ring buffer's pages directly (mmap, in batches; ~1.6x BCC's callback). "
        "false uses BCC's ring_buffer_consume; the daemon also falls back to it, with a "
        "warning, when the pages cannot be mapped.",
        default=True,
    )
    compiled_decoder: bool = doc(
        "Decode open, fork and exit records in C (cauditd/probes/_fastrecords.c, built when the "
        "package is installed where gcc and the Python headers are). false, or when it was not "
        "built (the start-up log says), decodes every record in Python, which is slower.",
        default=True,
    )
    max_args: int = doc(
        "argv entries captured per exec (the kernel side caps it at 16).", default=16
    )
    process_table_size: int = doc("Processes the process table keeps at most.", default=65536)
    cgroup_root: str = doc(
        "cgroup v2 mount; empty means detect (/sys/fs/cgroup or /sys/fs/cgroup/unified).",
        default="",
    )
    docker_socket: str = doc("Docker Engine API socket.", default="/var/run/docker.sock")
    containerd_socket: str = doc(
        "containerd's gRPC socket, used where it exists (and grpcio is installed): metadata of "
        "containers Docker does not know (Containers/Get, Tasks/Get in the namespace the cgroup "
        "path names, else k8s.io, default) and task events. Docker's own containerd listens on "
        "/var/run/docker/containerd/containerd.sock.",
        default="/run/containerd/containerd.sock",
    )
    crio_socket: str = doc(
        "CRI-O's socket, used where it exists: its inspect endpoint (GET /containers/<id>) gives "
        "metadata of crio-<id>.scope containers.",
        default="/var/run/crio/crio.sock",
    )


@dataclass(slots=True, kw_only=True)
class NetworkConfig:
    enabled: bool = doc(
        "Attach tc programs to containers' host-side veth interfaces.", default=True
    )
    flow_scrape_interval_s: float = doc("How often the kernel flow table is read.", default=5.0)
    flow_idle_timeout_s: float = doc("A flow idle this long is reported as ended.", default=30.0)
    flow_log_size: int = doc("Flows kept in memory for the API.", default=10000)
    per_connection_flows: bool = doc(
        "Give every connection to a port a container already serves a flow of its own. By "
        "default those connections are counted per client address and port (an aggregated "
        "flow with its connection count, ended every flow_idle_timeout_s while in use), so a "
        "busy server's clients cost cauditd one flow each, not one per connection.",
        default=False,
    )
    dns_capture_bytes: int = doc("Bytes of each DNS packet copied to user space.", default=512)
    history: bool = doc(
        "Keep ended flows and DNS records in the state database too (GET /v1/flows and "
        "/v1/dns read it when `since` reaches past what memory holds).", default=True
    )
    history_days: float = doc("Flow and DNS records older than this are deleted.", default=7.0)
    history_max_rows: int = doc(
        "At most this many flows, and as many DNS records, are kept in the database.",
        default=1_000_000,
    )
    inbound_learning_s: float = doc(
        "After a container is attached, its listening ports are learnt this long; later, the "
        "first inbound flow to a port it did not listen on sets net.port_first_seen.",
        default=60.0,
    )
    ringbuf_mmap: bool = doc(
        "Read the network ring buffer's pages directly (as probes.ringbuf_mmap).", default=True
    )


@dataclass(slots=True, kw_only=True)
class RulesConfig:
    default_rules: bool = doc("Load the rules shipped with cauditd.", default=True)
    paths: list[str] = doc(
        "Rule files or directories loaded after the defaults, in order: cauditd TOML "
        "(`.toml`) and Falco rule files (`.yaml`, `.yml`; what of them cannot load is "
        "skipped and logged, one line each).",
        default_factory=lambda: ["/etc/cauditd/rules.d"],
    )
    min_priority: str = doc("Rules below this priority are not loaded.", default="debug")
    suppress_window_s: float = doc(
        "Repeats of one finding within this window are merged.", default=60.0
    )
    finding_budget: int = doc(
        "New findings one rule may make about one container per budget window; past it they "
        "are folded into one summary finding whose count grows (0: no budget).",
        default=20,
    )
    finding_budget_window_s: float = doc("The finding budget's window.", default=60.0)


@dataclass(slots=True, kw_only=True)
class StoreConfig:
    retention_days: float = doc("Findings older than this are deleted.", default=30.0)
    max_findings: int = doc(
        "At most this many findings are kept; the oldest go first.", default=1_000_000
    )
    batch_ms: int = doc(
        "During a burst, findings are written in batches at most this old (what a SIGKILL may "
        "lose; alerts leave only after the write). The first finding after a quiet spell is "
        "written at once.",
        default=20,
    )


@dataclass(slots=True, kw_only=True)
class TokenConfig:
    file: str = doc("A file holding the bearer token (its first line).")
    role: str = doc('"read" or "admin".', default="read")


@dataclass(slots=True, kw_only=True)
class ApiConfig:
    enabled: bool = doc("Serve the HTTP API.", default=True)
    listen: str = doc(
        "host:port of the HTTP API; without tokens it must be loopback.", default="127.0.0.1:7411"
    )
    unix_socket: str = doc(
        "Also serve on this unix socket (mode 0600); empty for none.", default=""
    )
    tokens: list[TokenConfig] = doc(
        "Bearer tokens and their roles. Without any, the API is open to every local user and "
        "may only listen on loopback.",
        default_factory=list,
    )
    max_connections: int = doc(
        "Open client connections at most (TCP and unix socket together); past it a new "
        "connection is answered 503 and closed. Keep it well below the unit's LimitNOFILE.",
        default=256,
    )
    max_streams: int = doc(
        "Concurrent /v1/findings/stream clients at most; past it a stream request gets 503.",
        default=32,
    )
    max_body_bytes: int = doc(
        "Largest request body accepted (the API's requests carry none or little); 413 above.",
        default=65536,
    )


@dataclass(slots=True, kw_only=True)
class SinkConfig:
    name: str = doc("Name of the sink in logs, metrics and the API.")
    kind: str = doc(
        "slack, mattermost, rocketchat, discord, teams, googlechat, webhook, exec or otlp "
        "(OTLP/HTTP protobuf logs; url is the Collector's .../v1/logs; use rate_limit = \"none\")."
    )
    url: str = doc("Webhook URL (prefer url_file for secrets).", default="")
    url_file: str = doc("File holding the webhook URL.", default="")
    command: list[str] = doc(
        "For kind = exec: the program and its arguments.", default_factory=list
    )
    min_priority: str = doc("Findings below this priority are not sent.", default="warning")
    rules: list[str] = doc("Only these rules (empty: all).", default_factory=list)
    tags: list[str] = doc(
        "Only findings with one of these tags (empty: all).", default_factory=list
    )
    containers: list[str] = doc(
        "Only these container names or ids (empty: all).", default_factory=list
    )
    template: str = doc("Message text with %field placeholders; empty for the default.", default="")
    rate_limit: str = doc(
        'At most this many messages, e.g. "20/min"; the rest are summarised.', default="20/min"
    )
    timeout_s: float = doc("Timeout of one delivery.", default=10.0)
    max_in_flight: int = doc("Deliveries under way at once for this sink.", default=1)
    format: str = doc(
        'For kind = teams: "adaptive" (Workflows webhook) or "messagecard" (legacy connector); '
        "empty picks by URL (webhook.office.com means messagecard).",
        default="",
    )
    retry_base_s: float = doc(
        "First retry delay; it doubles per attempt, with jitter.", default=1.0
    )
    retry_max_s: float = doc(
        "Longest retry delay (a service's Retry-After is honoured).", default=300.0
    )
    max_attempts: int = doc("Attempts before a delivery is marked failed (0: no limit).", default=0)
    max_queue: int = doc(
        "Findings waiting for this sink at most; past it the oldest below Critical leave the "
        "queue unsent (they stay in the findings store), counted and logged.",
        default=10000,
    )


@dataclass(slots=True, kw_only=True)
class AlertsConfig:
    sinks: list[SinkConfig] = doc("Where findings are sent.", default_factory=list)


@dataclass(slots=True, kw_only=True)
class FleetConfig:
    servers: list[str] = doc(
        'NATS servers, e.g. ["nats://10.0.0.5:4222"]; empty: no fleet export, no rollout.',
        default_factory=list,
    )
    host: str = doc(
        "This host's token in subjects (cauditd.<host>.finding.<priority>); empty: "
        "daemon.hostname or the system's, with '.', '*', '>' and spaces made '_'.",
        default="",
    )
    subject_prefix: str = doc("First token of every subject.", default="cauditd")
    creds_file: str = doc("A NATS credentials file (JWT and NKey seed), as `nats --creds`.",
                          default="")
    nkey_file: str = doc("A file holding an NKey seed (SU...), as `nats --nkey`.", default="")
    token_file: str = doc("A file whose first line is the NATS token.", default="")
    tls_ca_file: str = doc("CA bundle that signs the servers' certificates (TLS on).", default="")
    tls_cert_file: str = doc("Client certificate for mutual TLS.", default="")
    tls_key_file: str = doc("Client certificate's key for mutual TLS.", default="")
    stream: str = doc("JetStream stream of findings, flows and DNS records.", default="CAUDITD")
    create_stream: bool = doc(
        "Create the stream when it is missing; false: only check that it exists as configured.",
        default=True,
    )
    replicas: int = doc("Stream replicas (1, or 3 or 5 on a cluster).", default=1)
    max_age_days: float = doc("Messages older than this leave the stream (0: no limit).",
                              default=30.0)
    max_bytes: int = doc("Stream size limit in bytes; the oldest go first (-1: no limit).",
                         default=-1)
    duplicate_window_s: float = doc(
        "JetStream's de-duplication window by Nats-Msg-Id: a message retried within it is "
        "stored once.", default=600.0,
    )
    storage: str = doc('"file" or "memory".', default="file")
    min_priority: str = doc("Findings below this priority are not published.", default="debug")
    publish_flows: bool = doc(
        "Also publish ended flows (cauditd.<host>.flow; needs network.history).", default=False
    )
    publish_dns: bool = doc(
        "Also publish DNS records (cauditd.<host>.dns; needs network.history).", default=False
    )
    heartbeat_interval_s: float = doc(
        "How often this host publishes cauditd.<host>.heartbeat (version, rule-set digest, "
        "drops; kept in the stream <stream>_HOSTS).", default=10.0,
    )
    ack_timeout_s: float = doc("How long one publish waits for JetStream's ack.", default=5.0)
    retry_max_s: float = doc("Longest wait between publish attempts while the broker is away.",
                             default=10.0)
    rules_bucket: str = doc(
        "Follow fleet rule rollout from this JetStream key-value bucket (one key per rule "
        "file; `cauditctl fleet rules push`); empty: rules are local only.", default="",
    )


@dataclass(slots=True, kw_only=True)
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    path: str = field(default="", metadata={"internal": True})


def check_file_permissions(path: Path | str, what: str, *, secret: bool = False) -> None:
    """Refuse a file another user could change: owned by someone other than root (or the user
    running cauditd), or writable by its group or others. A secret (token, webhook URL) must not
    be readable by others either. ConfigError says what is wrong and how to fix it."""
    info = os.stat(path)
    if info.st_uid not in (0, os.geteuid()):
        raise ConfigError(
            f"{path}: refusing {what} owned by uid {info.st_uid}: another user could change it "
            f"(chown root {path})"
        )
    mode = stat.S_IMODE(info.st_mode)
    unsafe = stat.S_IWGRP | stat.S_IWOTH | (stat.S_IROTH if secret else 0)
    if mode & unsafe:
        who = "readable or writable by others" if secret else "writable by group or others"
        raise ConfigError(
            f"{path}: refusing {what} with mode {mode:04o}, {who} (chmod {mode & ~unsafe:04o} "
            f"{path})"
        )


def load(path: Path | str | None = None, *, missing_ok: bool = True) -> Config:
    """Load and check a config file; a missing default file means all defaults."""
    target = Path(path) if path is not None else DEFAULT_PATH
    try:
        check_file_permissions(target, "a config file")
        raw = target.read_bytes()
    except FileNotFoundError:
        if path is None and missing_ok:
            return Config()
        raise ConfigError(f"{target}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{target}: {exc.strerror}") from None
    try:
        table = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{target}: not valid TOML: {exc}") from None
    config = from_table(Config, table, str(target), "")
    config.path = str(target)
    return config


def from_table(cls: type[T], table: Any, source: str, prefix: str) -> T:
    """Build dataclass `cls` from a TOML table, checking keys and types."""
    where = prefix or "the top level"
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {where} must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        name = ".".join(filter(None, (prefix, unknown[0])))
        raise ConfigError(f"{source}: unknown key {name!r} (known: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, value in table.items():
        key = ".".join(filter(None, (prefix, name)))
        values[name] = _convert(hints[name], value, source, key)
    missing = [
        n
        for n, f in fields.items()
        if n not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{source}: {prefix or 'table'} needs key {missing[0]!r}")
    return cls(**values)


def _convert(hint: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_table(hint, value, source, key)  # type: ignore[arg-type]
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, not {_tname(value)}")
        return [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported config type {hint}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{source}: {key} must be an integer, not a boolean")
    if not isinstance(value, hint):
        raise ConfigError(f"{source}: {key} must be {_tname_of(hint)}, not {_tname(value)}")
    return value


def _tname_of(hint: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}.get(
        hint, hint.__name__
    )


def _tname(value: Any) -> str:
    return (
        _tname_of(type(value))
        if not isinstance(value, list | dict)
        else ("a list" if isinstance(value, list) else "a table")
    )


def sections() -> list[tuple[str, type]]:
    """The config sections in file order, for docs and `check-config`."""
    hints = typing.get_type_hints(Config)
    return [
        (f.name, hints[f.name])
        for f in dataclasses.fields(Config)
        if not f.metadata.get("internal")
    ]


def reference_markdown() -> str:
    """The key reference of docs/configuration.md, generated from the section dataclasses."""
    out: list[str] = []
    for section, cls in sections():
        out.extend(_section_markdown(section, cls))
    return "\n".join(out) + "\n"


def _section_markdown(title: str, cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    lines = [f"### `[{title}]`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    nested: list[tuple[str, type]] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        item = (typing.get_args(hint) or (None,))[0]
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            nested.append((f"{title}.{f.name}", item))
        meaning = f.metadata.get("doc", "")
        lines.append(f"| `{f.name}` | {_type_text(hint)} | {_default_text(f)} | {meaning} |")
    lines.append("")
    for name, item in nested:
        lines.extend(_section_markdown(f"[{name}]", item))
    return lines


def _type_text(hint: Any) -> str:
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        inner = "table" if dataclasses.is_dataclass(item) else _type_text(item)
        return f"list of {inner}"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(hint, str(hint))


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{json.dumps(f.default)}`"
    if f.default_factory is not dataclasses.MISSING:
        return f"`{json.dumps(f.default_factory())}`"
    return "required"


if __name__ == "__main__":  # python -m cauditd.config > regenerates the reference
    print(reference_markdown(), end="")

"""`cauditctl fleet ...`: the whole fleet's findings, hosts and rule rollout, asked of NATS.

Servers and credentials come from --server/--creds/--nkey/--tls-ca/--tls-cert/--tls-key, then
the NATS tools' variables (NATS_URL, NATS_CREDS, NATS_NKEY, NATS_CA, NATS_CERT, NATS_KEY), then
the [fleet] table of ~/.config/cauditctl.toml (servers, creds_file, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from cauditd.findings import Priority, parse_rfc3339_ns
from cauditd.fleet.connection import Access, FleetError

EXIT_ERROR = 1
EXIT_UNREACHABLE = 3
_AGE = re.compile(r"([0-9]{1,9})(s|m|h|d|w)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_ENV = {"servers": "NATS_URL", "creds_file": "NATS_CREDS", "nkey_file": "NATS_NKEY",
        "tls_ca_file": "NATS_CA", "tls_cert_file": "NATS_CERT", "tls_key_file": "NATS_KEY"}


def add_parser(sub: Any) -> None:
    """Add `fleet` and its commands to cauditctl's sub-parsers."""
    fleet = sub.add_parser("fleet", help="the whole fleet, through NATS JetStream")
    fleet.add_argument("--server", action="append", help="NATS server URL (repeatable)")
    for flag, text in (("creds", "credentials file"), ("nkey", "NKey seed file"),
                       ("tls-ca", "CA bundle"), ("tls-cert", "client certificate"),
                       ("tls-key", "client key")):
        fleet.add_argument(f"--{flag}", help=text)
    fleet.add_argument("--stream", help="stream name (default CAUDITD)")
    fleet.add_argument("--prefix", help="subject prefix (default cauditd)")
    commands = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")

    findings = commands.add_parser("findings", help="findings of every host, newest first")
    findings.add_argument("--since", default="1h", help="RFC 3339 time or an age (default 1h)")
    findings.add_argument("--host", action="append", help="host (repeatable)")
    findings.add_argument("--min-priority", dest="min_priority", help="emergency ... debug")
    findings.add_argument("--rule", action="append", help="rule name (repeatable)")
    findings.add_argument("--container", action="append", help="container name or id")
    findings.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    findings.add_argument("-f", "--follow", action="store_true", help="then print new ones")
    findings.add_argument("--count", type=int, default=0, help="with --follow: stop after N")
    findings.set_defaults(fleet_run=cmd_findings)

    commands.add_parser("hosts", help="each host's last heartbeat").set_defaults(
        fleet_run=cmd_hosts)

    rules = commands.add_parser("rules", help="push rule files to the fleet; rollout status")
    actions = rules.add_subparsers(dest="action", required=True, metavar="ACTION")
    push = actions.add_parser("push", help="put rule files in the bucket; followers load them")
    push.add_argument("files", nargs="+", type=Path, help="rule files or directories")
    push.add_argument("--replicas", type=int, default=1, help="replicas of a new bucket")
    status = actions.add_parser("status", help="the pushed set and what each host runs")
    for parser in (push, status):
        parser.add_argument("--bucket", default="cauditd-rules", help="key-value bucket")
        parser.set_defaults(fleet_run=cmd_rules)


def run(args: argparse.Namespace, out: TextIO, file_config: dict[str, Any],
        print_findings: Callable[..., None], print_dicts: Callable[..., None]) -> int:
    """Run a fleet command; returns the exit status."""
    settings = dict(file_config.get("fleet") or {})
    access = _access(args, settings)
    stream = args.stream or settings.get("stream") or "CAUDITD"
    prefix = args.prefix or settings.get("subject_prefix") or "cauditd"
    from nats import errors as nats_errors
    from nats.js import errors as js_errors

    context = Context(access, stream, prefix, out, args, print_findings, print_dicts)
    try:
        return asyncio.run(context.run(args.fleet_run))
    except FleetError as exc:
        sys.stderr.write(f"cauditctl: {exc}\n")
        return EXIT_ERROR
    except js_errors.NotFoundError as exc:
        sys.stderr.write(f"cauditctl: not found on the NATS servers: {exc.description}\n")
        return EXIT_ERROR
    except (OSError, TimeoutError, nats_errors.NoServersError) as exc:
        where = ", ".join(access.servers)
        sys.stderr.write(f"cauditctl: cannot reach NATS at {where}: {exc or type(exc).__name__}\n")
        return EXIT_UNREACHABLE
    except nats_errors.Error as exc:
        sys.stderr.write(f"cauditctl: NATS: {exc}\n")
        return EXIT_ERROR


def _access(args: argparse.Namespace, settings: dict[str, Any]) -> Access:
    def pick(flag: str | None, key: str) -> str:
        return flag or os.environ.get(_ENV[key], "") or str(settings.get(key, ""))

    servers = args.server or [s for s in os.environ.get("NATS_URL", "").split(",") if s]
    if not servers and isinstance(settings.get("servers"), list):
        servers = [str(s) for s in settings["servers"]]
    return Access(
        servers=tuple(servers or ["nats://127.0.0.1:4222"]),
        creds_file=pick(args.creds, "creds_file"), nkey_file=pick(args.nkey, "nkey_file"),
        tls_ca_file=pick(args.tls_ca, "tls_ca_file"),
        tls_cert_file=pick(args.tls_cert, "tls_cert_file"),
        tls_key_file=pick(args.tls_key, "tls_key_file"),
    )  # fmt: skip


def parse_since(text: str) -> int:
    """An age (15m, 2h, 7d) before now or an RFC 3339 time, as ns since the epoch."""
    match = _AGE.fullmatch(text.strip())
    if match:
        return time.time_ns() - int(match.group(1)) * _UNIT_S[match.group(2)] * 10**9
    try:
        return parse_rfc3339_ns(text)
    except ValueError:
        raise FleetError(f"--since {text!r}: expected an age (15m, 2h, 7d) or an RFC 3339 "
                         "time") from None


class Context:
    """One command's connection and arguments."""

    def __init__(self, access: Access, stream: str, prefix: str, out: TextIO,
                 args: argparse.Namespace, print_findings: Callable[..., None],
                 print_dicts: Callable[..., None]) -> None:
        from cauditd.fleet.subjects import Subjects

        self.access, self.stream, self.out, self.args = access, stream, out, args
        self.subjects = Subjects(prefix)
        self.print_findings, self.print_dicts = print_findings, print_dicts
        self.js: Any = None

    async def run(self, command: Callable[[Context], Awaitable[int]]) -> int:
        from cauditd.fleet.connection import connect

        nc = await connect(self.access, name="cauditctl", forever=False, error_cb=_quiet)
        try:
            self.js = nc.jetstream(timeout=10)
            return await command(self)
        finally:
            await nc.close()


async def _quiet(exc: Exception) -> None:
    """Connection errors surface as the exception `run` reports, not as a traceback."""


def _table_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The finding as `cauditctl findings` prints it, its id qualified by its host."""
    return {**doc, "id": f"{doc.get('hostname', '?')}/{doc.get('id')}"}


async def cmd_findings(ctx: Context) -> int:
    from cauditd.fleet import query

    args = ctx.args
    try:
        min_priority = Priority.parse(args.min_priority) if args.min_priority else None
    except ValueError as exc:
        raise FleetError(str(exc)) from None
    spec = query.FindingQuery(since_ns=parse_since(args.since), hosts=args.host or [],
                              min_priority=min_priority, rules=args.rule or [],
                              containers=args.container or [])
    docs, subs, last_seq = await query.findings(ctx.js, ctx.stream, ctx.subjects, spec)
    shown = docs[-args.limit:] if args.follow else list(reversed(docs))[: args.limit]
    _print(ctx, shown, header=True)
    if not args.follow:
        return 0
    count = 0
    async for message in query.follow(subs, last_seq):
        if spec.matches(message.doc):
            _print(ctx, [message.doc], header=False)
            count += 1
            if args.count and count >= args.count:
                break
    return 0


def _print(ctx: Context, docs: list[dict[str, Any]], *, header: bool) -> None:
    as_json = ctx.args.json
    ctx.print_findings(docs if as_json else [_table_doc(d) for d in docs], ctx.out, as_json,
                       header=header)


async def cmd_hosts(ctx: Context) -> int:
    from cauditd.fleet import query

    rows = await query.hosts(ctx.js, ctx.stream, ctx.subjects)
    if ctx.args.json:
        ctx.out.write(json.dumps(rows, indent=2) + "\n")
        return 0
    table = [{"host": r.get("host"), "last_heartbeat": r.get("time"), "age_s": r.get("age_s"),
              "version": r.get("version"), "rules_digest": _short(r.get("rules_digest")),
              "drops": r.get("drops"), "outbox": r.get("outbox_depth")} for r in rows]
    ctx.print_dicts(table, ctx.out, False)
    return 0


def _short(digest: Any) -> str:
    text = str(digest or "-")
    return text if len(text) <= 24 else text[:24] + "…"


async def cmd_rules(ctx: Context) -> int:
    from cauditd.fleet import query, rollout

    args = ctx.args
    if args.action == "push":
        try:
            files = rollout.read_rule_files(args.files)
        except rollout.RolloutError as exc:
            raise FleetError(str(exc)) from None
        manifest = await query.push_rules(ctx.js, args.bucket, files, replicas=args.replicas,
                                          pushed_by=f"{os.environ.get('USER', '?')}@"
                                                    f"{socket.gethostname()}")
        ctx.out.write(f"pushed {len(files)} file(s) to {args.bucket}: {manifest.digest}\n")
        return 0
    status = await query.rules_status(ctx.js, ctx.stream, ctx.subjects, args.bucket)
    if ctx.args.json:
        ctx.out.write(json.dumps(status, indent=2) + "\n")
        return 0
    pushed = status["pushed"]
    ctx.out.write(f"bucket {args.bucket}: "
                  + (f"{pushed['digest']} ({len(pushed['files'])} file(s), {pushed['pushed_at']})"
                     if pushed else "nothing pushed") + "\n")
    ctx.print_dicts([{**h, "errors": len(h["errors"])} for h in status["hosts"]], ctx.out, False)
    for host in status["hosts"]:
        for error in host["errors"]:
            ctx.out.write(f"{host['host']}: {error}\n")
    return 0

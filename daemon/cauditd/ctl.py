"""cauditctl: the command-line client of the cauditd HTTP API (findings, rules, containers, ...).

The address and token come from --url/--socket/--token-file, then CAUDITD_URL / CAUDITD_SOCKET /
CAUDITD_TOKEN_FILE, then ~/.config/cauditctl.toml (keys url, socket, token_file), then the
daemon's own config ($CAUDITD_CONFIG or /etc/cauditd/cauditd.toml) when this user may read it:
its listen address or unix socket, and its token files (the read token for reads, the admin
token for POSTs), so root on the host needs no flags.

Findings carry strings a container chose: every table cell and message is printed through
cauditd.text.terminal (control characters, ANSI/OSC sequences, newlines that would fake a row and
invisible format characters escaped); --json prints JSON with every non-ASCII character escaped.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import time
import tomllib
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cauditd import config as configmod
from cauditd import text
from cauditd.config import ApiConfig

DEFAULT_URL = "http://127.0.0.1:7411"
CONFIG_PATH = Path("~/.config/cauditctl.toml")
RECONNECT_S = 2.0
COLOURS = {
    "Emergency": "\033[1;31m", "Alert": "\033[1;31m", "Critical": "\033[1;31m",
    "Error": "\033[31m", "Warning": "\033[33m", "Notice": "\033[36m",
}
RESET = "\033[0m"
EXIT_API_ERROR = 1
EXIT_UNREACHABLE = 3


class ApiError(Exception):
    """An error answer of the API: status plus its {"error", "detail"} body."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {"error": str(body), "detail": ""}
        super().__init__(f"{status} {self.body.get('error')}: {self.body.get('detail')}")


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


@dataclass(slots=True)
class Client:
    """A small synchronous client of the API."""

    url: str = DEFAULT_URL
    token: str = ""
    socket_path: str = ""
    timeout: float = 30.0
    # Tokens by role from the daemon's config, used when no token was given: every admin route
    # of the API is a POST and every POST is an admin route (a test holds the API to it).
    role_tokens: dict[str, str] = field(default_factory=dict)

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.socket_path:
            return UnixHTTPConnection(self.socket_path, timeout or self.timeout)
        parts = urllib.parse.urlsplit(self.url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        return cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout or self.timeout)

    def _path(self, path: str, params: Sequence[tuple[str, str]] = ()) -> str:
        prefix = "" if self.socket_path else urllib.parse.urlsplit(self.url).path.rstrip("/")
        query = urllib.parse.urlencode(list(params))
        return f"{prefix}{path}" + (f"?{query}" if query else "")

    def _headers(self, extra: dict[str, str] | None = None,
                 method: str = "GET") -> dict[str, str]:
        headers = {"Accept": "application/json", **(extra or {})}
        token = self.token or self._role_token("admin" if method == "POST" else "read")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _role_token(self, role: str) -> str:
        """The token for `role`, else whichever this user could read (a read token on an admin
        route then gets the API's clear 403)."""
        return self.role_tokens.get(role) or next(iter(self.role_tokens.values()), "")

    def call(self, method: str, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        """One request; the decoded JSON body, or ApiError for a status of 400 or more."""
        conn = self._connection(None)
        try:
            conn.request(method, self._path(path, params), headers=self._headers(method=method))
            resp = conn.getresponse()
            raw = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        if resp.status >= 400:
            raise ApiError(resp.status, body)
        return body

    def stream(self, params: Sequence[tuple[str, str]],
               last_id: int | None) -> Iterator[dict[str, Any]]:
        """Findings from /v1/findings/stream, reconnecting with Last-Event-ID when cut."""
        while True:
            extra = {"Accept": "text/event-stream"}
            if last_id is not None:
                extra["Last-Event-ID"] = str(last_id)
            conn = self._connection(timeout=120.0)
            try:
                conn.request("GET", self._path("/v1/findings/stream", params),
                             headers=self._headers(extra))
                resp = conn.getresponse()
                if resp.status >= 400:
                    raise ApiError(resp.status, json.loads(resp.read() or b"{}"))
                for event_id, data in _sse_events(resp):
                    last_id = event_id
                    yield data
            except (ConnectionError, TimeoutError, http.client.HTTPException, OSError):
                pass
            finally:
                conn.close()
            time.sleep(RECONNECT_S)


def _sse_events(resp: http.client.HTTPResponse) -> Iterator[tuple[int, dict[str, Any]]]:
    """(id, finding) of each `event: finding` block; comments and retry lines are skipped."""
    fields: dict[str, str] = {}
    for raw in resp:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line == "":
            if fields.get("event") == "finding" and "data" in fields:
                yield int(fields.get("id", "0")), json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            fields[key] = value[1:] if value.startswith(" ") else value


# -- output --------------------------------------------------------------------------------------


def _table(rows: list[list[str]], headers: list[str], out: TextIO,
           colour: Callable[[int], str] | None = None) -> None:
    """Columns padded to their widest cell; the last column runs free."""
    rows = [[text.terminal(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers[:-1], widths, strict=False))
              + "  " + headers[-1] + "\n")
    for n, row in enumerate(rows):
        cells = "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=False))
        line = cells + "  " + row[-1]
        start = colour(n) if colour else ""
        out.write(f"{start}{line}{RESET if start else ''}\n")


def _finding_row(f: dict[str, Any]) -> list[str]:
    container = f.get("container") or {}
    name = container.get("name") or container.get("id") or ""
    repeats = f" (x{f['count']})" if f.get("count", 1) > 1 else ""
    return [str(f.get("id")), str(f.get("time", ""))[:23].replace("T", " "),
            str(f.get("priority", "")), str(f.get("rule", "")), name,
            str(f.get("output", "")) + repeats]


def print_findings(findings: list[dict[str, Any]], out: TextIO, as_json: bool,
                   header: bool = True) -> None:
    """A table (coloured by priority on a terminal) or JSON lines."""
    if as_json:
        for finding in findings:
            out.write(json.dumps(finding) + "\n")
        out.flush()
        return
    tty = out.isatty()
    rows = [_finding_row(f) for f in findings]

    def colour(n: int) -> str:
        return COLOURS.get(str(findings[n].get("priority")), "") if tty else ""

    headers = ["ID", "TIME (UTC)", "PRIORITY", "RULE", "CONTAINER", "OUTPUT"]
    if header:
        _table(rows, headers, out, colour)
    else:
        for n, row in enumerate(rows):
            start = colour(n)
            line = "  ".join(text.terminal(cell) for cell in row)
            out.write(f"{start}{line}{RESET if start else ''}\n")
    out.flush()


def print_dicts(items: list[dict[str, Any]], out: TextIO, as_json: bool,
                columns: list[str] | None = None) -> None:
    """Any list of objects as a table of `columns` (default: the keys of the first)."""
    if as_json:
        out.write(json.dumps(items, indent=2) + "\n")
        return
    if not items:
        out.write("(none)\n")
        return
    keys = columns or list(items[0])
    rows = [[_cell(item.get(k)) for k in keys] for item in items]
    _table(rows, [k.upper() for k in keys], out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


# -- commands ------------------------------------------------------------------------------------


def _finding_params(args: argparse.Namespace) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for name in ("since", "until", "min_priority"):
        if getattr(args, name):
            params.append((name, getattr(args, name)))
    for name in ("rule", "tag", "container", "source"):
        params += [(name, v) for v in getattr(args, name) or []]
    return params


def cmd_findings(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    params = _finding_params(args)
    page = client.call("GET", "/v1/findings", [*params, ("limit", str(args.limit))])
    findings = list(reversed(page["findings"])) if args.follow else page["findings"]
    print_findings(findings, out, args.json)
    if not args.follow:
        if page.get("next_cursor") and not args.json:
            out.write(f"(more: --limit above {args.limit}, or narrow the filters)\n")
        return 0
    last_id = max((f["id"] for f in findings), default=None)
    if last_id is None:
        last_id = _newest_id(client)
    for shown, finding in enumerate(client.stream(params, last_id), start=1):
        print_findings([finding], out, args.json, header=False)
        if args.count and shown >= args.count:
            break
    return 0


def _newest_id(client: Client) -> int:
    page = client.call("GET", "/v1/findings", [("limit", "1")])
    return int(page["findings"][0]["id"]) if page["findings"] else 0


def cmd_rules(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.action == "check":
        return check_rules(args.paths, out)
    if args.action == "reload":
        try:
            client.call("POST", "/v1/rules/reload")
        except ApiError as exc:
            if exc.status != 422:
                raise
            out.write("rule set refused; the running rules are unchanged:\n")
            for error in exc.body.get("errors", []):
                out.write(f"  {text.terminal(str(error))}\n")
            return EXIT_API_ERROR
        out.write("rules reloaded\n")
        return 0
    rules = client.call("GET", "/v1/rules")["rules"]
    print_dicts(rules, out, args.json, ["name", "enabled", "priority", "matches", "tags"])
    return 0


def check_rules(paths: list[str], out: TextIO) -> int:
    """Run the local rule checker on `paths` (default: the shipped rules)."""
    try:
        from cauditd import rules as rules_module
    except ImportError:
        out.write("the rule checker (cauditd.rules.check) is not available in this installation\n")
        return EXIT_API_ERROR
    check = getattr(rules_module, "check", None)
    if check is None:
        out.write("the rule checker (cauditd.rules.check) is not available in this installation\n")
        return EXIT_API_ERROR
    targets = [Path(p) for p in paths]
    if not targets and hasattr(rules_module, "default_rules_dir"):
        targets = [Path(rules_module.default_rules_dir())]
    errors = list(check(targets))
    for error in errors:
        out.write(f"{text.terminal(str(error))}\n")
    names = ", ".join(str(t) for t in targets)
    out.write(f"{len(errors)} problem(s) in {names}\n" if errors else f"ok: {names}\n")
    return EXIT_API_ERROR if errors else 0


def cmd_containers(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.id:
        print_dicts([client.call("GET", f"/v1/containers/{urllib.parse.quote(args.id, safe='')}")],
                    out, True)
        return 0
    body = client.call("GET", "/v1/containers")
    print_dicts(body["containers"], out, args.json,
                None if args.json else ["short_id", "name", "image", "findings", "last_finding"])
    return 0


def cmd_status(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stats = client.call("GET", "/v1/stats")
    try:
        ready = client.call("GET", "/readyz")["status"] == "ready"
        state = "ready"
    except ApiError as exc:  # not attached yet, or degraded (the state dir refuses writes)
        ready = False
        state = f"NOT READY ({exc.body.get('error')}: {exc.body.get('detail')})"
    if args.json:
        out.write(json.dumps({"ready": ready, "stats": stats}, indent=2) + "\n")
        return 0
    out.write(text.terminal(f"daemon: {state}") + "\n")
    for key, value in stats.items():
        out.write(text.terminal(f"{key}: {_cell(value)}") + "\n")
    return 0


def cmd_alerts(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.action == "test":
        result = client.call("POST", f"/v1/alerts/{urllib.parse.quote(args.sink, safe='')}/test")
        out.write(json.dumps(result) + "\n")
        return 0
    print_dicts(client.call("GET", "/v1/alerts")["sinks"], out, args.json)
    return 0


def _network_params(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [(k, str(getattr(args, k))) for k in ("container", "since", "peer", "port", "name",
                                                 "limit") if getattr(args, k) is not None]


def cmd_flows(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    print_dicts(client.call("GET", "/v1/flows", _network_params(args))["flows"], out, args.json)
    return 0


def cmd_dns(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    print_dicts(client.call("GET", "/v1/dns", _network_params(args))["dns"], out, args.json)
    return 0


# -- arguments -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cauditctl", description="Query a running cauditd: findings, rules, containers.",
        epilog="Address and token: flags, then CAUDITD_URL / CAUDITD_SOCKET / "
               "CAUDITD_TOKEN_FILE, then ~/.config/cauditctl.toml (url, socket, token_file).",
    )
    parser.add_argument("--url", help=f"API address (default {DEFAULT_URL})")
    parser.add_argument("--socket", help="talk to the API's unix socket instead")
    parser.add_argument("--token-file", help="file whose first line is the bearer token")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    findings = sub.add_parser("findings", help="list findings, newest first (or --follow)")
    findings.add_argument("--since", help="RFC 3339 time or an age: 15m, 2h, 7d")
    findings.add_argument("--until", help="RFC 3339 time or an age")
    findings.add_argument("--min-priority", dest="min_priority",
                          help="emergency ... debug: this level or more severe")
    for name, what in (("rule", "rule name"), ("tag", "tag"),
                       ("container", "container id, short id or name"), ("source", "source")):
        findings.add_argument(f"--{name}", action="append", help=f"{what} (repeatable)")
    findings.add_argument("--limit", type=int, default=50, help="how many (default 50, max 1000)")
    findings.add_argument("-f", "--follow", action="store_true",
                          help="then print new findings as they come (reconnects by itself)")
    findings.add_argument("--count", type=int, default=0,
                          help="with --follow: stop after this many new findings")
    findings.set_defaults(run=cmd_findings)

    rules = sub.add_parser("rules", help="list, check or reload rules")
    rules.add_argument("action", choices=["list", "check", "reload"], nargs="?", default="list")
    rules.add_argument("paths", nargs="*", help="for check: rule files or directories")
    rules.set_defaults(run=cmd_rules)

    containers = sub.add_parser("containers", help="tracked containers and their findings")
    containers.add_argument("id", nargs="?", help="one container: full id, short id or name")
    containers.set_defaults(run=cmd_containers)

    sub.add_parser("status", help="readiness and counters").set_defaults(run=cmd_status)

    alerts = sub.add_parser("alerts", help="alert sinks; send a test message")
    alerts.add_argument("action", choices=["list", "test"], nargs="?", default="list")
    alerts.add_argument("sink", nargs="?", help="for test: the sink's name")
    alerts.set_defaults(run=cmd_alerts)

    for name, run, what in (("flows", cmd_flows, "network flows"),
                            ("dns", cmd_dns, "DNS queries and answers")):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("--container", help="container id, short id or name")
        cmd.add_argument("--since", help="RFC 3339 time or an age")
        cmd.add_argument("--peer", help="peer IP address or CIDR network")
        cmd.add_argument("--port", type=int, help="peer port")
        cmd.add_argument("--name", help="DNS name")
        cmd.add_argument("--limit", type=int, help="how many (default 100)")
        cmd.set_defaults(run=run)

    from cauditd.fleet.ctl import add_parser as add_fleet_parser

    add_fleet_parser(sub)
    return parser


def make_client(args: argparse.Namespace) -> Client:
    """Flags, then the environment, then ~/.config/cauditctl.toml, then the daemon's config."""
    file_config = _read_config()
    url = args.url or os.environ.get("CAUDITD_URL") or file_config.get("url") or ""
    sock = args.socket or os.environ.get("CAUDITD_SOCKET") or file_config.get("socket") or ""
    token_file = (args.token_file or os.environ.get("CAUDITD_TOKEN_FILE")
                  or file_config.get("token_file") or "")
    token = _read_token(str(token_file), required=True) if token_file else ""
    daemon = _daemon_api_config()
    if daemon is not None and not (url or sock):
        url, sock = _daemon_address(daemon)
    role_tokens: dict[str, str] = {}
    if daemon is not None and not token:
        for entry in daemon.tokens:
            role_tokens.setdefault(entry.role, _read_token(entry.file, required=False))
    return Client(url=str(url or DEFAULT_URL), token=token, socket_path=str(sock),
                  role_tokens={role: value for role, value in role_tokens.items() if value})


def _read_token(path: str, *, required: bool) -> str:
    """The first line of a token file; a file this user cannot read is an error only if named."""
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as exc:
        if required:
            raise SystemExit(f"cauditctl: token file {path}: {exc.strerror}") from None
        return ""
    return lines[0].strip() if lines else ""


def _daemon_api_config() -> ApiConfig | None:
    """The [api] section of the daemon's config, or None when absent or unreadable here."""
    path = os.environ.get("CAUDITD_CONFIG") or str(configmod.DEFAULT_PATH)
    try:
        return configmod.load(path).api
    except configmod.ConfigError:
        return None


def _daemon_address(api: ApiConfig) -> tuple[str, str]:
    """(url, unix socket) to reach the daemon the way its config says it listens."""
    if api.unix_socket and os.path.exists(api.unix_socket):
        return "", api.unix_socket
    host, _, port = api.listen.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}.get(host, host)
    return f"http://{host}:{port}", ""


def _read_config() -> dict[str, Any]:
    path = CONFIG_PATH.expanduser()
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SystemExit(f"cauditctl: {path}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cauditctl`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "alerts" and args.action == "test" and not args.sink:
        parser.error("alerts test needs a SINK")
    out = sys.stdout
    if args.command == "fleet":  # asks NATS, not this host's API
        from cauditd.fleet.ctl import run as run_fleet

        return run_fleet(args, out, _read_config(), print_findings, print_dicts)
    client = make_client(args)
    try:
        return int(args.run(client, args, out))
    except ApiError as exc:
        message = f"{exc.body.get('error')}: {exc.body.get('detail')}"
        sys.stderr.write(f"cauditctl: {text.terminal(message)}\n")
        if exc.status == 401 and not (client.token or client.role_tokens):
            sys.stderr.write("cauditctl: no token: pass --token-file, or run as a user who may "
                             "read the daemon's token files\n")
        return EXIT_API_ERROR
    except OSError as exc:
        where = client.socket_path or client.url
        sys.stderr.write(f"cauditctl: cannot reach {where}: {exc}\n")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`cauditd`: run the daemon, check its configuration, print events for rule writers."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from cauditd import __version__, log
from cauditd import config as configmod


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="cauditd",
        description="Container security and network auditing daemon (eBPF probes, Falco-style "
        "rules, findings API, chat alerts).",
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config",
            type=Path,
            default=None,
            help=f"config file (default {configmod.DEFAULT_PATH}; all defaults when it is missing)",
        )
        return p

    run = with_config(sub.add_parser("run", help="run the daemon in the foreground"))
    run.add_argument(
        "--print-events", action="store_true", help="print every decoded event as a JSON line"
    )
    run.add_argument(
        "--dump-bpf", action="store_true", help="print the generated eBPF C program and exit"
    )
    with_config(sub.add_parser("events", help="print decoded events live as JSON lines"))
    with_config(sub.add_parser("check-config", help="check the config file and exit"))
    sub.add_parser("version", help="print the version")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "version":
        print(f"cauditd {__version__}")
        return 0
    try:
        config = configmod.load(args.config)
    except configmod.ConfigError as exc:
        print(f"cauditd: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{config.path or configmod.DEFAULT_PATH}: ok")
        return 0
    log.setup(config.daemon.log_level, config.daemon.log_format)
    from cauditd.daemon import Daemon  # BCC and aiohttp load only for commands that need them

    print_events = args.command == "events" or args.print_events
    daemon = Daemon(config, print_events=print_events)
    if getattr(args, "dump_bpf", False):
        print(daemon.probes.dump())
        return 0
    try:
        return asyncio.run(daemon.run())
    except Exception as exc:  # a start-up failure: say why in one line, exit non-zero
        print(f"cauditd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

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
    rules = sub.add_parser("rules", help="work with rule files")
    rules_sub = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    check = with_config(
        rules_sub.add_parser(
            "check",
            help="report every problem in the rule files (default: the configured ones); "
            "TOML and Falco YAML files",
        )
    )
    check.add_argument("paths", nargs="*", type=Path, help="rule files or directories")
    check.add_argument(
        "--strict", action="store_true",
        help="fail when a rule of a Falco file is skipped, not only on errors",
    )
    imports = rules_sub.add_parser(
        "import",
        help="convert Falco rule files (YAML) into one cauditd TOML rule file; what cannot "
        "load is reported and left out",
    )
    imports.add_argument("paths", nargs="+", type=Path, help="Falco rule files, in load order")
    imports.add_argument("-o", "--output", type=Path, default=None,
                         help="write the TOML here (default: standard output)")
    sub.add_parser("fields", help="list the fields conditions and outputs can use")
    sub.add_parser("version", help="print the version")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "version":
        print(f"cauditd {__version__}")
        return 0
    if args.command == "fields":
        from cauditd.rules import format_fields

        print(format_fields())
        return 0
    if args.command == "rules" and args.rules_command == "import":
        return import_rules(args.paths, args.output)
    try:
        config = configmod.load(args.config)
    except configmod.ConfigError as exc:
        print(f"cauditd: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        return check_config(config)
    if args.command == "rules":
        return check_rules(args.paths or rule_paths(config.rules), strict=args.strict)
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


def check_config(config: configmod.Config) -> int:
    """The file, then what the daemon would refuse at start: the API's address and token files."""
    from cauditd.api import ApiConfigError
    from cauditd.api import check_config as check_api

    try:
        if config.api.enabled:
            check_api(config.api)
    except ApiConfigError as exc:
        print(f"cauditd: {config.path or configmod.DEFAULT_PATH}: {exc}", file=sys.stderr)
        return 2
    print(f"{config.path or configmod.DEFAULT_PATH}: ok")
    return 0


def rule_paths(config: configmod.RulesConfig) -> list[Path]:
    from cauditd.detection import rule_paths as configured

    return configured(config)


def check_rules(paths: list[Path], *, strict: bool = False) -> int:
    """Print every problem in every file and what Falco files hold that cannot load; exit 1
    on an error (or, `strict`, on anything skipped)."""
    from cauditd.rules.loader import compile_paths

    result = compile_paths(paths)
    for problem in [*result.errors, *result.notices]:
        print(problem, file=sys.stderr)
    names = ", ".join(str(p) for p in paths)
    if result.errors:
        print(f"{len(result.errors)} problem(s) in {names}", file=sys.stderr)
        return 1
    loaded = f"{len(result.rules)} rules load"
    skipped = [n.where.item.split(" ", 1)[0] for n in result.notices
               if n.message.startswith("skipped")]
    if skipped:
        print(f"{names}: {loaded}; skipped: {skipped.count('rule')} rules, "
              f"{skipped.count('macro')} macros (see above)")
        return 1 if strict else 0
    print(f"{names}: ok ({loaded})")
    return 0


def import_rules(paths: list[Path], output: Path | None) -> int:
    """Falco rule files to one TOML file; what is skipped goes to stderr, one line each."""
    from cauditd.rules.builder import build
    from cauditd.rules.export import to_toml
    from cauditd.rules.loader import read_book

    book = read_book(paths)
    result = build(book)
    for problem in [*result.errors, *result.notices]:
        print(problem, file=sys.stderr)
    if result.errors:
        print(f"{len(result.errors)} problem(s): nothing written", file=sys.stderr)
        return 1
    text = to_toml(book, result, [str(p) for p in paths])
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
    skipped = len(book.rules) - len(result.rules)
    print(f"imported {len(result.rules)} rules, skipped {skipped}"
          + (f" -> {output}" if output else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

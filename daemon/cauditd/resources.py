"""Where the probes' C sources and the default rules are, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`_data/<name>` inside an installed wheel, else `<name>/` at the top of the checkout."""
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parents[1] / name


def probes_dir() -> Path:
    return data_dir("probes")


def rules_dir() -> Path:
    return data_dir("rules")

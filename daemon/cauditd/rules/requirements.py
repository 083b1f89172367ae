"""Falco files' required_engine_version and required_plugin_versions, checked and reported.

cauditd reads the rule language of Falco's engine ENGINE_VERSION (fields, operators,
transformers); a file asking for a newer one is loaded for what it says that cauditd
understands, with a notice. Of Falco's plugins, the container plugin's fields are cauditd's own;
rules of other plugins' sources are skipped by the builder (their `source` is not ours).
"""

from __future__ import annotations

from cauditd.rules.errors import Notice
from cauditd.rules.model import Requirement

ENGINE_VERSION = "0.57.0"
PROVIDED_PLUGINS = {"container": "cauditd's own container.* and k8s.* fields"}


def version_tuple(text: str) -> tuple[int, ...]:
    """"0.57.0" -> (0, 57, 0); a bare number (old files: 17) is a minor version."""
    parts = []
    for part in text.strip().lstrip("v").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return (0, parts[0]) if len(parts) == 1 else tuple(parts)


def check_requirements(requirements: list[Requirement]) -> list[Notice]:
    """A notice for each requirement cauditd does not meet as asked."""
    notices = []
    for req in requirements:
        if req.kind == "engine":
            if version_tuple(req.version) > version_tuple(ENGINE_VERSION):
                notices.append(Notice(req.where, f"requires Falco engine {req.version}; "
                                      f"cauditd reads the rule language of engine "
                                      f"{ENGINE_VERSION}: what it does not know is skipped"))
        elif req.name in PROVIDED_PLUGINS:
            continue
        else:
            notices.append(Notice(req.where, f"requires plugin {req.name!r} {req.version}, "
                                  "which cauditd does not have: rules of its sources are "
                                  "skipped"))
    return notices

"""Bearer tokens read from files, each with a role; constant-time checks, values never logged."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cauditd.config import ApiConfig, ConfigError, check_file_permissions

ROLES = ("read", "admin")


class ApiConfigError(ValueError):
    """An API configuration the server refuses to start with."""


@dataclass(slots=True, frozen=True)
class Token:
    """One accepted token and what it may do; repr hides the value."""

    value: bytes
    role: str

    def __repr__(self) -> str:
        return f"Token(role={self.role!r})"


def load_tokens(config: ApiConfig) -> list[Token]:
    """Read each token file's first line; an empty, missing or unsafe file (another user could
    read or change it) is a configuration error."""
    tokens = []
    for entry in config.tokens:
        if entry.role not in ROLES:
            raise ApiConfigError(f"api.tokens: role {entry.role!r} is not one of {ROLES}")
        try:
            check_file_permissions(entry.file, "a token file", secret=True)
            lines = Path(entry.file).read_text().splitlines()
        except ConfigError as exc:
            raise ApiConfigError(f"api.tokens: {exc}") from None
        except OSError as exc:
            raise ApiConfigError(f"api.tokens: cannot read {entry.file}: {exc.strerror}") from None
        value = lines[0].strip() if lines else ""
        if len(value) < 16:
            raise ApiConfigError(f"api.tokens: {entry.file} must hold a token of 16+ characters")
        tokens.append(Token(value.encode(), entry.role))
    return tokens


def role_of(tokens: list[Token], authorization: str | None) -> str | None:
    """The role the Authorization header grants, or None. Compares every token in constant time."""
    if not authorization:
        return None
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    candidate = presented.strip().encode("utf-8", "replace")
    granted: str | None = None
    for token in tokens:
        if hmac.compare_digest(token.value, candidate) and granted != "admin":
            granted = token.role
    return granted


def allows(role: str, needed: str) -> bool:
    """Whether `role` covers `needed` (admin covers read)."""
    return role == "admin" or role == needed


def is_loopback(host: str) -> bool:
    """Whether a listen host only accepts local connections."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

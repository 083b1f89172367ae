"""The HTTP JSON API: findings, rules, containers, stats, alerts, flows, metrics and OpenAPI."""

from cauditd.api.app import ROUTES, ApiServer, check_config, make_app, serve
from cauditd.api.auth import ApiConfigError
from cauditd.api.context import (
    CONTEXT,
    AlertsView,
    ApiContext,
    ContainersView,
    NetworkFilter,
    NetworkView,
    RulesView,
    StatsView,
)

__all__ = [
    "CONTEXT",
    "ROUTES",
    "AlertsView",
    "ApiConfigError",
    "ApiContext",
    "ApiServer",
    "ContainersView",
    "NetworkFilter",
    "NetworkView",
    "RulesView",
    "StatsView",
    "check_config",
    "make_app",
    "serve",
]

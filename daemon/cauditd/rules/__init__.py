"""Rules: TOML rule files in Falco's condition language, compiled once, matched per event."""

from cauditd.rules.engine import RuleEngine
from cauditd.rules.errors import RuleError, RuleSetError
from cauditd.rules.fields import FIELDS, format_fields
from cauditd.rules.loader import check, default_rules_dir, load_ruleset
from cauditd.rules.ruleset import Rule, RuleSet

__all__ = [
    "FIELDS",
    "Rule",
    "RuleEngine",
    "RuleError",
    "RuleSet",
    "RuleSetError",
    "check",
    "default_rules_dir",
    "format_fields",
    "load_ruleset",
]

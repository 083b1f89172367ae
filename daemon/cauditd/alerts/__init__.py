"""Alerting: findings to chat services, webhooks and programs, at least once, without floods."""

from cauditd.alerts.dispatcher import AlertDispatcher

__all__ = ["AlertDispatcher"]

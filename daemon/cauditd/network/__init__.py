"""Network auditing on containers' host-side veths: tc programs, flows, DNS, network events."""

from cauditd.network.monitor import NetworkMonitor

__all__ = ["NetworkMonitor"]

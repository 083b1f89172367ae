"""cauditd: container security and network auditing daemon."""

__version__ = "0.1.0"

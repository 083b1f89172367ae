"""The fleet: findings (and optionally flows and DNS records) exported to NATS JetStream from the
durable outbox, host heartbeats, fleet-wide queries for cauditctl, and rule rollout through a
JetStream key-value bucket. nats-py is imported only when a fleet is configured.
"""

"""eBPF probes: loading the C programs with BCC and moving their records into asyncio."""

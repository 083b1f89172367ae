"""Which container an event came from: cgroup ids to container ids, and their metadata."""

"""Real deployments and their faults: Cluster, Sentinel, a Redis killed or stalled, load."""

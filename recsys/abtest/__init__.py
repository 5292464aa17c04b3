"""A/B experiments: definitions stored in Redis, deterministic assignment, statistics."""

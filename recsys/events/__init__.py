"""Logged events kept beyond the bounded Redis stream (the append-only archive)."""

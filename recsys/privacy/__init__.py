"""Erasure of users (right to be forgotten): tombstones and the ``forget`` operation."""

"""Publishing precomputed lists to Redis as immutable versions, with atomic switch and rollback."""

"""Loading, validating and aggregating interaction data."""

"""Redis: key layout, list encoding and connections, shared by the publisher and the API."""

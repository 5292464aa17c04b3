"""Entry points of long-running batch jobs (the trainer service of docker compose)."""

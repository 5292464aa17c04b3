"""Live catalogue changes between trainings (the item overlay)."""

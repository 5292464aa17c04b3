"""The batch retraining job: configuration, training into run folders, publishing, scheduling."""

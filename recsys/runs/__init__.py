"""The run folder and its list files: the one format training writes and publishing reads."""

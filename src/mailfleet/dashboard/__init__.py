"""The dashboard overview: one read of a workspace's state, for the API and the console."""

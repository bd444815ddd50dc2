"""The export package: finish, show, queue and send spans (see pipeline)."""

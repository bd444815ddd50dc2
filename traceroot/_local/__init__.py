"""The local trace store (SQLite) and its viewer: `traceroot ui`, `traceroot traces`, `show`."""

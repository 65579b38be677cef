"""Where runs are kept: the embedded SQLite store, the tracking tables and the run cache."""

"""Modules shared by the Ray jobs under jobs/ (copied into a job's working directory to ship it)."""

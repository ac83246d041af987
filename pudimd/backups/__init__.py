"""Scheduled, compressed backups of the config file and the state database, and restore."""

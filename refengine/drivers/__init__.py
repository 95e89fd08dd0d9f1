"""Drivers below the engine: graph drivers (layer storage and container root filesystems)."""

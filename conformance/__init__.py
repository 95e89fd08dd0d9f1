"""Conformance harness for Docker-Engine-API-compatible daemons (a pytest plugin and its checks)."""

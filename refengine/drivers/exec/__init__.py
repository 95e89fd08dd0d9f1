"""Exec drivers: how a container record becomes a running process (native = refengine libcontainer)."""

"""Containers: records, the store, create/inspect/list/update/remove; running them goes through an exec driver."""

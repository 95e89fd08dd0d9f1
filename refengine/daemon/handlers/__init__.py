"""Thin HTTP handlers: parse the request, run an engine job, shape the response."""

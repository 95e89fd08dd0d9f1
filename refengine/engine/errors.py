"""Errors a job raises, each with the HTTP status the API gives it (dockerd's errdefs classes)."""

from __future__ import annotations


class EngineError(Exception):
    http_status = 500


class InvalidParameter(EngineError):
    http_status = 400


class NotFound(EngineError):
    http_status = 404


class Conflict(EngineError):
    http_status = 409


class NotModified(EngineError):
    http_status = 304


class Forbidden(EngineError):
    http_status = 403

"""The engine: a registry of named jobs, as in Docker's classic Engine/Job design."""

from .engine import Engine, Job, JobError, JobNotFound

__all__ = ["Engine", "Job", "JobError", "JobNotFound"]

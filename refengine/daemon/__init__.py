"""refengined: the Engine API server (listeners, HTTP, router, thin handlers) over the engine's jobs."""

"""refengine: the client CLI."""

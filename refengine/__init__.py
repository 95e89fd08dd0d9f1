"""refengine: the reference Docker-compatible engine (client → server → engine → drivers → libcontainer).

The engine itself is built in later work (see the project's issues); this package exists so the
distribution installs both halves of the project from the start.
"""

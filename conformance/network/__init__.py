"""The network area of the conformance suite."""

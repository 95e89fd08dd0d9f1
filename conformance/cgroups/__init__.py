"""The cgroups area of the conformance suite."""

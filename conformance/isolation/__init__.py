"""The isolation area of the conformance suite."""

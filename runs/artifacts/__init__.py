"""Artifact versions: the data sets and models runs consume and produce, shared across a workspace."""

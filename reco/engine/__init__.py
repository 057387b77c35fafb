"""The recommendation engine: incremental aggregates and pure scoring."""

"""The run directory: the contract every layer above reads and writes (docs/run-format.md)."""

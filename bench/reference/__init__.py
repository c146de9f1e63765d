"""The textbook Channels chat server the hub is measured against (docs/benchmarks.md)."""

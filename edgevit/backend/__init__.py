"""The shared backend layer (docs/architecture.md)."""

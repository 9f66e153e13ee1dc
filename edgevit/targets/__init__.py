"""edgevit.targets (see DESIGN.md)."""

"""edgevit.nas (see DESIGN.md)."""

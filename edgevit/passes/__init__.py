"""edgevit.passes (see DESIGN.md)."""

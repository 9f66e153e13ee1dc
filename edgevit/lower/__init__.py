"""edgevit.lower (see DESIGN.md)."""

"""edgevit.hil (see DESIGN.md)."""

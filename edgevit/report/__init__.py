"""edgevit.report (see DESIGN.md)."""

"""The backends, one package each (`edgevit.targets.<kind>`, exposing `TARGET`). Shared code never
imports them: `edgevit.backend.target.get_target` finds one by name (docs/architecture.md)."""

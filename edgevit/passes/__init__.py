"""edgevit.passes (docs/passes.md, docs/architecture.md): the pass registry, pipelines and the compiler passes."""

"""edgevit.nas (docs/nas.md): search space, weight-sharing supernet, evolutionary search under a target's costs."""

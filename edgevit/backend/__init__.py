"""The shared backend layer (docs/architecture.md): the target contract and Costs, the static memory
planner, generic TVM kernels, compile, artifact writing and loading, test vectors, and running
artifacts through a target's runners. Nothing here names a backend."""

"""What to try when a Program exceeds a device budget: the passes that shrink each kind of memory.

Weights (MCU flash, the constants in a CPU's RAM) shrink with fewer bits per weight, low-rank
factors and pruning; activations (the arena in SRAM or RAM) shrink with int8 activations, token
merging and pruning. Token merging never reduces weights, so a model over its *flash* budget is
told about weights only. Targets build their `over_budget_hint` from these phrases, so every
backend gives the same advice for the same kind of memory.

    reduce_hint("weights", program)       # "reduce the weights with --passes, e.g. quant(w=8,a=8) (...); ..."
"""

from __future__ import annotations

# (pass example, what it does, only for float programs: quant applies once)
WEIGHT_PASSES = (
    ("quant(w=8,a=8)", "8-bit weights: 4x smaller than float", True),
    ("quant(w=4,a=8)", "4-bit weights: 8x smaller than float", True),
    ("lowrank(ratio=0.5)", "factorised linears: fewer weights", False),
    ("prune(heads=0.25,mlp=0.25)", "fewer attention heads and MLP channels", False),
)
ACTIVATION_PASSES = (
    ("quant(w=8,a=8)", "int8 activations: 4x less memory than float", True),
    ("tome(r=...)", "token merging: fewer rows in every activation", False),
    ("prune(heads=...)", "fewer attention heads / MLP channels", False),
)
KINDS = {"weights": WEIGHT_PASSES, "activations": ACTIVATION_PASSES}


def is_float(program) -> bool:
    """True for a float Program (quantization still possible)."""
    return program.meta.get("lowering", "float") == "float"


def suggested_passes(kind: str, program) -> list[str]:
    """"pass (what it does)" phrases that reduce `kind` ("weights", "activations" or "both") for
    `program`; quant only while the program is float."""
    table = WEIGHT_PASSES + ACTIVATION_PASSES if kind == "both" else KINDS[kind]
    seen, out = set(), []
    for example, what, float_only in table:
        if (float_only and not is_float(program)) or example in seen:
            continue
        seen.add(example)
        out.append(f"{example} ({what})")
    return out


def reduce_hint(kind: str, program) -> str:
    """"reduce the <kind> with --passes, e.g. ..." for `kind` "weights", "activations" or "both"."""
    what = "the model" if kind == "both" else f"the {kind}"
    text = f"reduce {what} with --passes, e.g. {'; '.join(suggested_passes(kind, program))}"
    if kind == "weights":
        text += "; token merging (tome) does not reduce weights"
    return text

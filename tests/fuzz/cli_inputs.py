"""The files the CLI fuzzer feeds the commands: valid base inputs made once per session (`Assets`) and
per-example variants drawn from them (`draw_spec`, `draw_checkpoint`, `draw_profile`, `pipeline_text`,
`draw_onnx`; data sets: cli_datasets.py), written into the example's own input directory.

Base inputs are tiny so that a valid command is cheap: an 8x8 grayscale 3-class ViT (one block), an
.npz of 40 images and an image folder of 12, the checkpoint (directory and single file), its ONNX
export, and for `run` the synthetic int8 artifact of tests/backend/synth_artifact.py (3 vectors).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from hypothesis import strategies as st

from tests.backend.synth_artifact import build_artifact
from tests.fuzz.cli_datasets import png_bytes, write_file
from tests.fuzz.cli_values import junk_scalar, mutated_bytes, mutated_tree, raw_yaml, yaml_text

SPEC = {"name": "fz", "image_size": 8, "in_channels": 1, "patch_size": 2, "embed_dim": 8, "pool": "cls",
        "num_classes": 3, "depth": 1, "heads": 2, "head_dim": 4, "mlp_hidden": 16}
PROFILES_DIR = Path(__file__).resolve().parents[2] / "edgevit" / "profiles"


@dataclass
class Assets:
    """Valid inputs every example starts from (paths under a session directory)."""

    root: Path
    spec: Path
    checkpoint: Path
    single: Path
    npz: Path
    folder: Path
    onnx: Path
    artifact: Path
    profiles: dict

    @classmethod
    def build(cls, root: Path) -> "Assets":
        """Write every base input under `root` (a model with random weights)."""
        from edgevit.model.checkpoint import save_checkpoint
        from edgevit.model.onnx_export import export_onnx
        from edgevit.model.spec import ViTSpec
        from edgevit.model.vit import build_model

        root.mkdir(parents=True, exist_ok=True)
        spec = root / "spec.yaml"
        spec.write_text(yaml.safe_dump(SPEC))
        model = build_model(ViTSpec.from_dict(SPEC), seed=0).eval()
        ckpt, single = save_checkpoint(model, root / "ckpt"), save_checkpoint(model, root / "single.safetensors")
        rng = np.random.default_rng(0)
        npz = root / "data.npz"
        np.savez(npz, x_train=rng.integers(0, 256, (32, 8, 8), dtype=np.uint8), y_train=rng.integers(0, 3, 32),
                 x_test=rng.integers(0, 256, (8, 8, 8), dtype=np.uint8), y_test=rng.integers(0, 3, 8))
        folder = root / "folder"
        for c in range(3):
            for i in range(4):
                (folder / f"c{c}").mkdir(parents=True, exist_ok=True)
                (folder / f"c{c}" / f"{i}.png").write_bytes(png_bytes(rng.integers(0, 256, (8, 8), dtype=np.uint8)))
        onnx = root / "model.onnx"
        export_onnx(model, onnx)
        artifact = build_artifact(root / "artifact", n=3)
        profiles = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(PROFILES_DIR.glob("*.yaml"))}
        return cls(root, spec, ckpt, single, npz, folder, onnx, artifact, profiles)


# --- specs -------------------------------------------------------------------------------------------------------


def draw_spec(data, assets: Assets, inputs: Path, bad: bool) -> Path:
    """A spec YAML: valid (the base one or a valid variant), or bad: mutated, raw junk, huge sizes, or a
    path that is not a file."""
    path = inputs / "spec.yaml"
    if not bad:
        variant = data.draw(st.sampled_from([{}, {"pool": "mean"}, {"depth": 2}, {"heads": 1, "head_dim": 8},
                                             {"patch_size": 4}, {"distill_token": True, "pool": "cls_dist"}]),
                            label="spec variant")
        return write_file(path, yaml.safe_dump({**SPEC, **variant})) if variant else assets.spec
    kind = data.draw(st.sampled_from(["mutated", "mutated", "raw", "huge", "missing", "directory"]), label="spec kind")
    if kind == "mutated":
        return write_file(path, yaml_text(data.draw(mutated_tree(SPEC), label="spec tree")))
    if kind == "raw":
        return write_file(path, data.draw(raw_yaml(), label="spec text"))
    if kind == "huge":
        field = data.draw(st.sampled_from(["embed_dim", "image_size", "depth", "mlp_hidden", "heads", "num_classes"]))
        value = data.draw(st.sampled_from([10**9, 2**31, 10**12] + ([10**5] if field == "embed_dim" else [])),
                          label=f"huge {field}")  # sizes no machine holds (embed_dim 100000: the case)
        return write_file(path, yaml.safe_dump({**SPEC, field: value}))
    if kind == "directory":
        path.mkdir(parents=True)
        return path
    return inputs / "no-such-spec.yaml"


# --- checkpoints -------------------------------------------------------------------------------------------------

BAD_CKPT_KINDS = ("bytes", "tensor", "tensor", "tensor", "metadata", "spec", "junk-file", "missing", "empty-dir")


CERTAIN_TENSOR_EDITS = ("nan", "inf", "shape", "missing", "extra", "empty")  # no model can load these


def _mutated_state(data, state: dict, must_fail: list | None) -> dict:
    """The state dict with one tensor made NaN / inf / huge, retyped, reshaped, removed, or an extra one
    added; edits no loader may accept are appended to `must_fail`."""
    import torch

    state = dict(state)
    key = data.draw(st.sampled_from(sorted(state)), label="tensor")
    kind = data.draw(st.sampled_from(["nan", "inf", "huge", "dtype", "shape", "missing", "extra", "empty"]),
                     label="tensor edit")
    if must_fail is not None and kind in CERTAIN_TENSOR_EDITS:
        must_fail.append(f"checkpoint tensor {key}: {kind}")
    t = state[key].clone()
    if kind in ("nan", "inf", "huge"):
        t.view(-1)[0] = {"nan": float("nan"), "inf": float("-inf"), "huge": 3e38}[kind]
    elif kind == "dtype":
        t = t.to(data.draw(st.sampled_from([torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int64,
                                            torch.bool, torch.uint8])))
    elif kind == "shape":
        t = torch.zeros(*[s + 1 for s in t.shape]) if t.dim() else torch.zeros(2)
    elif kind == "missing":
        del state[key]
        return state
    elif kind == "extra":
        state["blocks.9.junk"] = torch.zeros(3)
    elif kind == "empty":
        t = torch.zeros(0)
    state[key] = t
    return state


def draw_checkpoint(data, assets: Assets, inputs: Path, bad: bool, must_fail: list | None = None) -> Path:
    """A model path for eval / compile / export-onnx: valid (the checkpoint directory, the single file, the
    directory without spec.yaml, the ONNX export), or bad: mutated bytes, tensors, metadata or spec, a
    junk file, a missing path or an empty directory."""
    from safetensors.torch import load_file, save_file

    from edgevit.model.checkpoint import read_metadata

    if not bad:
        kind = data.draw(st.sampled_from(["dir", "dir", "single", "spec-missing", "onnx"]), label="checkpoint kind")
        if kind == "spec-missing":  # the spec in the weights' metadata is used
            shutil.copytree(assets.checkpoint, inputs / "ckpt")
            (inputs / "ckpt" / "spec.yaml").unlink()
            return inputs / "ckpt"
        return {"dir": assets.checkpoint, "single": assets.single, "onnx": assets.onnx}[kind]
    kind = data.draw(st.sampled_from(BAD_CKPT_KINDS), label="checkpoint kind")
    if kind in ("missing",):
        return inputs / "no-such-ckpt"
    if kind == "empty-dir":
        (inputs / "empty").mkdir(parents=True)
        return inputs / "empty"
    if kind == "junk-file":
        suffix = data.draw(st.sampled_from([".safetensors", ".onnx", ".pth", ".bin", ".txt", ""]), label="suffix")
        return write_file(inputs / f"junk{suffix}", data.draw(st.binary(max_size=256), label="junk bytes"))
    ckpt = inputs / "ckpt"
    shutil.copytree(assets.checkpoint, ckpt)
    weights = ckpt / "model.safetensors"
    if kind == "bytes":
        weights.write_bytes(data.draw(mutated_bytes(weights.read_bytes()), label="weights bytes"))
    elif kind == "tensor":
        meta = read_metadata(weights)
        save_file(_mutated_state(data, load_file(str(weights)), must_fail), str(weights), metadata=meta)
    elif kind == "metadata":
        meta, state = read_metadata(weights), load_file(str(weights))
        key = data.draw(st.sampled_from(["spec", "preprocess", "format", "info", "version"]), label="metadata key")
        value = data.draw(st.one_of(st.just(None), junk_scalar().map(str),
                                    st.sampled_from(['{"mean": [NaN], "std": [0]}', '{"mean": [0.5], "std": [0.0]}',
                                                     '{"mean": "x"}', "[]", "{"])), label="metadata value")
        meta = {k: v for k, v in meta.items() if k != key} if value is None else {**meta, key: value}
        (ckpt / "spec.yaml").unlink()  # the metadata's spec is the one read
        save_file(state, str(weights), metadata=meta)
    elif kind == "spec":
        tree = data.draw(st.one_of(mutated_tree(SPEC), st.just({**SPEC, "embed_dim": 16}),
                                   st.just({**SPEC, "depth": 2})), label="checkpoint spec")
        (ckpt / "spec.yaml").write_text(yaml_text(tree))
    return ckpt


# --- profiles, pipelines, ONNX -----------------------------------------------------------------------------------


def draw_profile(data, assets: Assets, inputs: Path, bad: bool, budget: str = "any") -> str:
    """A --profile value. Valid: with budget "tiny", a shipped MCU profile whose SRAM / flash nothing fits
    (compile stops at the budget check, exit 3); else a shipped name or a copy of a shipped file (with
    budget "compilable", not an FPGA one: the FPGA target compiles integer Programs only, so it
    needs a quant pipeline). Bad:
    mutated fields, raw junk YAML, or a name / path that is no profile."""
    path = inputs / "profile.yaml"
    if not bad:
        if budget == "tiny":
            base = assets.profiles[data.draw(st.sampled_from(["stm32f746-disco", "nrf52840", "corstone-300"]))]
            memory = {**base["memory"], "regions": [], "sram_bytes": data.draw(st.sampled_from(["1KiB", "2KiB", 512])),
                      "flash_bytes": data.draw(st.sampled_from(["1MiB", "4KiB"]))}
            return str(write_file(path, yaml_text({**base, "name": "tiny", "memory": memory})))
        names = sorted(n for n, p in assets.profiles.items() if budget != "compilable" or p.get("kind") != "fpga")
        name = data.draw(st.sampled_from(names), label="profile name")
        return name if data.draw(st.booleans(), label="by name?") else str(write_file(path, yaml_text(assets.profiles[name])))
    kind = data.draw(st.sampled_from(["mutated", "mutated", "mutated", "raw", "bad-name"]), label="profile kind")
    if kind == "mutated":
        base = assets.profiles[data.draw(st.sampled_from(sorted(assets.profiles)), label="profile base")]
        return str(write_file(path, yaml_text(data.draw(mutated_tree(base), label="profile tree"))))
    if kind == "raw":
        return str(write_file(path, data.draw(raw_yaml(), label="profile text")))
    return data.draw(st.sampled_from(["no-such-board", "stm32f746", "STM32F746-DISCO", "", str(inputs / "none.yaml"),
                                      "../profiles/host"]), label="profile name")


PASS_NAMES = ("quant", "tome", "prune", "lowrank", "QUANT", "quantize", "", "tome_", "distill")
OPTION_NAMES = ("w", "a", "r", "heads", "mlp", "blocks", "ratio", "energy", "layers", "calib", "observer", "residual",
                "schedule", "mac_cut", "percentile", "repq", "flash_kb", "x", "")
OPTION_VALUES = ("8", "4", "0", "-1", "0.5", "1.5", "nan", "inf", "1e308", "[4,2]", "[]", "[[1]]", "mixed", "minmax",
                 "int16", "all", "abc", "1e-9", "99999999999", "+3", "0x8")


VALID_PIPELINES = ("quant(w=8,a=8,calib=4)", "tome(r=1)", "prune(heads=0.5,calib=4,importance=magnitude)",
                   "lowrank(ratio=0.5)", "tome(r=1),quant(calib=4,observer=minmax)", "quant(w=4,calib=4,residual=int16)",
                   "passes:\n  - lowrank: {energy: 0.9}\n  - quant: {calib: 4}\n")


@st.composite
def pipeline_text(draw, bad: bool = True) -> str:
    """A valid cheap pipeline, or (bad) a pipeline string from the grammar with random names, options and
    values, sometimes with broken punctuation, a broken YAML pipeline or random characters (these are
    sometimes valid by chance)."""
    if not bad:
        return draw(st.sampled_from(VALID_PIPELINES))
    kind = draw(st.sampled_from(["grammar", "grammar", "grammar", "yaml", "chars"]))
    if kind == "chars":
        return draw(st.text(alphabet="quant(),=[]; w8a\n\t.-:", max_size=30))
    if kind == "yaml":
        return draw(st.sampled_from(["passes:\n  - quant: {w: 8, calib: 4}\n", "- tome: {r: [1]}\n- quant\n",
                                     "passes: []\n", "- {quant: {w: .nan}}\n", "- [quant]\n", "passes:\n  - 7\n",
                                     "- quant: {w: 8}\n  tome: {}\n", "nope.yaml", "x.yml"]))
    passes = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(PASS_NAMES))
        opts = [f"{draw(st.sampled_from(OPTION_NAMES))}={draw(st.sampled_from(OPTION_VALUES))}"
                for _ in range(draw(st.integers(0, 3)))]
        passes.append(name + (f"({','.join(opts)})" if opts or draw(st.booleans()) else ""))
    sep = draw(st.sampled_from([",", ",", ", ", ",,", ";", " "]))
    text = sep.join(passes)
    if draw(st.integers(0, 4)) == 0:  # break the punctuation
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["(", ")", "=", ",", "[", "]", ""])) + text[at:]
    return text


def draw_onnx(data, assets: Assets, inputs: Path, bad: bool) -> Path:
    """An import source: the valid ONNX export, or (bad) its bytes mutated, a junk file of an importable
    suffix, a Hugging Face-like directory with a bad config, or a missing path."""
    if not bad:
        return assets.onnx
    kind = data.draw(st.sampled_from(["bytes", "bytes", "junk", "hf-dir", "missing"]), label="onnx kind")
    if kind == "bytes":
        return write_file(inputs / "model.onnx", data.draw(mutated_bytes(assets.onnx.read_bytes()), label="onnx bytes"))
    if kind == "junk":
        suffix = data.draw(st.sampled_from([".onnx", ".pth", ".bin", ".safetensors", ".pt"]))
        return write_file(inputs / f"src{suffix}", data.draw(st.binary(max_size=200), label="source bytes"))
    if kind == "hf-dir":
        d = inputs / "hf"
        config = data.draw(st.one_of(st.just({"model_type": "vit", "hidden_size": -1}), st.just({"model_type": "x"}),
                                     st.just({"model_type": "vit", "image_size": 8, "patch_size": 2, "hidden_size": 8,
                                              "num_hidden_layers": 1, "num_attention_heads": 3})), label="hf config")
        write_file(d / "config.json", json.dumps(config))
        shutil.copy(assets.single, d / "model.safetensors")
        return d
    return inputs / "no-such-model.onnx"

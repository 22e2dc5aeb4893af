"""Make a tiny random LoRA adapter (PEFT layout) for the tiny test model, without PEFT or any download.

Shapes come from the base model's config.json, so the adapter fits whatever hack/tinymodel.py made; the weights are
seeded random values with a non-zero B, so the adapter really changes the model's output (a fresh PEFT adapter has
B = 0 and changes nothing). Written with torch + safetensors only, so .venv-vllm's python runs it.

    python hack/tinylora.py OUT_DIR [--rank R] [--seed S] [--base BASE_DIR]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

VERSION = "1"  # bump when the recipe changes, so existing adapters are remade
TARGETS = ("q_proj", "v_proj")
CACHE = Path(os.environ.get("MODELPLANE_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelplane")
DEFAULT_BASE = CACHE / "pvc-weights" / "tiny"


def module_shapes(config: dict) -> dict[str, tuple[int, int]]:
    """(in, out) features of each target projection, as the base model's Linear layers have them."""
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    kv_heads = config.get("num_key_value_heads") or heads
    return {"q_proj": (hidden, heads * head_dim), "v_proj": (hidden, kv_heads * head_dim)}


def make(out: Path, base: Path = DEFAULT_BASE, rank: int = 8, seed: int = 0) -> Path:
    config = json.loads((base / "config.json").read_text())
    shapes = module_shapes(config)
    layers = config["num_hidden_layers"]
    # The marker records everything the weights depend on; it is written last, so a half-written adapter is remade.
    recipe = {"version": VERSION, "rank": rank, "seed": seed, "layers": layers,
              "shapes": {k: list(v) for k, v in shapes.items()}}
    marker = out / "modelplane-tinylora.json"
    if (marker.exists() and json.loads(marker.read_text()) == recipe
            and (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()):
        return out

    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for i in range(layers):
        for name, (n_in, n_out) in shapes.items():
            prefix = f"base_model.model.model.layers.{i}.self_attn.{name}"
            # Scale so the delta (alpha/r)·B·A is a few times the base's 0.02-std weights: large enough to change
            # greedy outputs of the random base model, small enough to stay finite in bf16/fp16.
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, n_in, generator=gen) * 0.1
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(n_out, rank, generator=gen) * 0.1
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    # safetensors writes the file owner-only (0600); a server running as another user (a pod) must read it.
    os.chmod(out / "adapter_model.safetensors", 0o644)
    # The fields vLLM's PEFTHelper requires (r, lora_alpha, target_modules) plus what PEFT itself writes.
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base),
        "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.0, "target_modules": list(TARGETS),
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "use_rslora": False, "use_dora": False, "modules_to_save": None, "rank_pattern": {}, "alpha_pattern": {},
    }
    (out / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
    marker.write_text(json.dumps(recipe))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the adapter into")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank r (vLLM's --max-lora-rank must be >= it)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE, help="the base model's folder (its config.json)")
    args = parser.parse_args()
    if args.rank <= 0:
        parser.error("--rank must be positive")
    print(make(args.out, args.base, args.rank, args.seed))


if __name__ == "__main__":
    main()

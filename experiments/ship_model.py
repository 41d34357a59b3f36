"""Copy a trained checkpoint into demask/assets as a shipped model: bf16 weights, its
tokenizer, the recipe that trained it (the shipped recipe file with the overrides of the run
recorded in a header comment), and its decoders.json if it has one.

    .venv/bin/python experiments/ship_model.py runs/v2-ar/checkpoint-0001200 tinycode-ar \\
        --recipe demask/recipes/tinycode/sft_ar.yaml --ran "demask train --recipe tinycode/sft_ar ..."
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("name", help="the shipped name (a folder of demask/assets)")
    parser.add_argument("--recipe", type=Path, required=True, help="the recipe file the run used")
    parser.add_argument("--ran", required=True, help="the exact training command (recorded in recipe.yaml)")
    args = parser.parse_args(argv)

    import torch

    from demask.model import load_pretrained, save_pretrained

    model, tokenizer = load_pretrained(args.checkpoint, dtype="float32")
    dest = ROOT / "demask" / "assets" / args.name
    if dest.exists():
        shutil.rmtree(dest)
    save_pretrained(model.to(torch.bfloat16), dest, tokenizer)
    header = f"# Shipped as {args.name}: trained with this recipe by\n#   {args.ran}\n#\n"
    (dest / "recipe.yaml").write_text(header + args.recipe.read_text())
    decoders = args.checkpoint / "decoders.json"
    if decoders.is_file():
        shutil.copy(decoders, dest / "decoders.json")
    print(f"shipped {args.checkpoint} as {dest}")
    return dest


if __name__ == "__main__":
    main()

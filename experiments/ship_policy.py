"""Copy a trained policy checkpoint into demask/assets as a shipped policy, its weights in fp16
(half the size; decoding computes in fp32), keeping the folder's README.md if it has one.

    .venv/bin/python experiments/ship_policy.py runs/polw-full-a1/checkpoint-0000162 tinycode-policy
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a policy folder written by demask policy-train")
    parser.add_argument("name", help="the shipped name (a folder of demask/assets)")
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16")
    args = parser.parse_args(argv)

    import json

    import torch

    from demask.decoding.policy_net import CONFIG_FILE, WEIGHTS_FILE, load_policy, save_policy

    net = load_policy(args.checkpoint)
    source = json.loads((args.checkpoint / CONFIG_FILE).read_text())
    extra = {k: v for k, v in source.items() if k not in ("kind", *net.config.__dataclass_fields__)}
    dest = ROOT / "demask" / "assets" / args.name
    save_policy(net, dest, dtype=getattr(torch, args.dtype), **extra)
    size = (dest / WEIGHTS_FILE).stat().st_size
    print(f"{dest}: {net.num_parameters() / 1e3:.0f}K parameters in {args.dtype}, {size / 1e3:.0f} KB")
    return dest


if __name__ == "__main__":
    main()

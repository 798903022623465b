"""Run the benchmarks on the default model and print a table of ratios (`make bench`)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))

from capture import bench_capture  # noqa: E402
from prompt_entropy import bench_prompt_entropy  # noqa: E402

import layerscope as ls  # noqa: E402


def main() -> None:
    model = ls.load(progress=False)
    rows = [bench_capture(model), bench_prompt_entropy(model)]
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()

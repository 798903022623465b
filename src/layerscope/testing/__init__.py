"""Tiny randomly initialised models built from configs in code, for fast tests and benchmarks.

Each has 4 blocks and d_model 32, and shares a small word-level tokenizer (built here, no files), so
prompts are ordinary strings and substrings resolve through character offsets like a real model.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["ARCHITECTURES", "tiny_config", "tiny_model", "tiny_tokenizer"]

ARCHITECTURES = ("llama", "gpt2", "gpt_neox", "gemma3", "qwen2", "bert")

_WORDS = [
    "the",
    "a",
    "an",
    "of",
    "in",
    "on",
    "to",
    "is",
    "was",
    "and",
    "or",
    "not",
    "it",
    "this",
    "that",
    "with",
    "for",
    "as",
    "at",
    "by",
    "from",
    "be",
    "are",
    "were",
    "capital",
    "city",
    "country",
    "france",
    "paris",
    "spain",
    "madrid",
    "italy",
    "rome",
    "germany",
    "berlin",
    "japan",
    "tokyo",
    "cat",
    "dog",
    "bird",
    "fish",
    "tree",
    "river",
    "mountain",
    "sea",
    "sun",
    "moon",
    "star",
    "red",
    "green",
    "blue",
    "big",
    "small",
    "old",
    "new",
    "q",
    "what",
    "who",
    "where",
    "when",
    "why",
    "how",
    "yes",
    "no",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "zero",
    "hello",
    "world",
    "model",
    "layer",
    "token",
    "answer",
    "question",
    "king",
    "queen",
    "man",
    "woman",
    "boy",
    "girl",
    "eiffel",
    "tower",
    "colosseum",
    "located",
    "famous",
    "language",
    "speak",
    "english",
    "french",
    "german",
    "food",
    "water",
    "fire",
    "music",
]
_SYMBOLS = list(".,:;?!->+=()'\"\n") + [str(d) for d in range(10)]


def tiny_tokenizer():
    """A word-level tokenizer with offsets; unknown words map to ``[UNK]``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[EOS]", *_WORDS, *_SYMBOLS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    from tokenizers import normalizers

    core.normalizer = normalizers.Lowercase()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")


def tiny_config(arch: str, vocab_size: int, n_layers: int = 4, d_model: int = 32):
    """A small config of the given architecture family."""
    import transformers as tf

    common = dict(vocab_size=vocab_size, pad_token_id=0, eos_token_id=2, bos_token_id=2)
    if arch == "llama":
        return tf.LlamaConfig(
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            **common,
        )
    if arch == "qwen2":
        return tf.Qwen2Config(
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            **common,
        )
    if arch == "gemma3":
        return tf.Gemma3TextConfig(
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=8,
            sliding_window=4,
            layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)],
            max_position_embeddings=256,
            **common,
        )
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=256, **common)
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            max_position_embeddings=256,
            **common,
        )
    if arch == "bert":
        return tf.BertConfig(
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            max_position_embeddings=256,
            vocab_size=vocab_size,
            pad_token_id=0,
        )
    raise ValueError(f"unknown tiny architecture {arch!r}: use one of {ARCHITECTURES}")


def tiny_model(arch: str = "llama", seed: int = 0, n_layers: int = 4, d_model: int = 32):
    """A :class:`layerscope.Model` wrapping a randomly initialised tiny model of ``arch``."""
    import transformers as tf

    from layerscope.models.model import Model

    tokenizer = tiny_tokenizer()
    config = tiny_config(arch, len(tokenizer), n_layers, d_model)
    torch.manual_seed(seed)
    if arch == "bert":
        hf = tf.BertModel(config, add_pooling_layer=False)
    elif arch == "gemma3":
        hf = tf.Gemma3ForCausalLM(config)
    else:
        hf = tf.AutoModelForCausalLM.from_config(config)
    hf.eval()
    model = Model(hf, tokenizer, name=f"tiny-{arch}", source="random init (layerscope.testing)")
    model.spec = functools.partial(tiny_model, arch, seed, n_layers, d_model)  # workers rebuild the same model
    return model

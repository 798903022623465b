"""Tiny random models of many architectures, built from ``transformers`` configs in code.

The architecture matrix of the test suite (``tests/models/test_architecture_matrix.py``) runs every
engine invariant on each of these against the plain Hugging Face model. A config is shrunk
generically (every size key the config has is set small) plus a few per-architecture overrides
where a family has sizes that must agree with each other (latent attention ranks, SSM heads,
hybrid layer patterns).
"""

from __future__ import annotations

import contextlib

import torch

N_LAYERS = 4
VOCAB = 160

#: keys set on every config that has them (sizes that keep a forward to a few milliseconds)
_SMALL = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYERS, num_attention_heads=4, num_key_value_heads=2,
    head_dim=8, max_position_embeddings=256, n_embd=32, n_layer=N_LAYERS, n_head=4, n_positions=256, n_ctx=256,
    d_model=32, num_layers=N_LAYERS, n_layers=N_LAYERS, ffn_dim=64, moe_intermediate_size=32,
    shared_expert_intermediate_size=32, shared_intermediate_size=32, num_experts=4, num_local_experts=4,
    n_routed_experts=4, num_experts_per_tok=2, vocab_size=VOCAB, pad_token_id=0, eos_token_id=2, bos_token_id=1,
    sliding_window=4, attention_window_size=4, rope_theta=10000.0,
)  # fmt: skip

_ALTERNATE = ["sliding_attention", "full_attention"] * (N_LAYERS // 2)

#: per-architecture overrides (model_type -> keys), applied after ``_SMALL``
OVERRIDES: dict[str, dict] = {
    "minicpm3": dict(qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, kv_lora_rank=8, q_lora_rank=16,
                     qk_head_dim=16, num_key_value_heads=4, dim_model_base=8, scale_emb=4, scale_depth=1.4),
    "deepseek_v3": dict(qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, kv_lora_rank=8, q_lora_rank=16,
                        qk_head_dim=16, num_key_value_heads=4, first_k_dense_replace=1, n_group=1, topk_group=1,
                        n_shared_experts=1),
    "gptj": dict(rotary_dim=4),
    "codegen": dict(rotary_dim=4),
    "mamba": dict(state_size=4, time_step_rank=4, expand=2, conv_kernel=4),
    "falcon_mamba": dict(state_size=4, time_step_rank=4, expand=2, conv_kernel=4),
    "mamba2": dict(num_heads=8, head_dim=8, expand=2, n_groups=1, state_size=4, time_step_rank=4, chunk_size=4),
    "xlstm": dict(embedding_dim=32, num_heads=2, num_blocks=N_LAYERS,
                  autocast_kernel_dtype="float32"),
    "jamba": dict(attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
                  mamba_d_state=4, mamba_dt_rank=4, use_mamba_kernels=False),
    "bamba": dict(mamba_n_heads=8, mamba_d_head=8, mamba_d_state=4, mamba_chunk_size=4, attn_layer_indices=[1, 3]),
    "zamba": dict(attention_hidden_size=64, attention_head_dim=16, n_mamba_heads=2, mamba_d_state=4, mamba_dt_rank=4,
                  attn_layer_period=2, attn_layer_offset=1, use_mamba_kernels=False,
                  layers_block_type=["linear_attention", "hybrid", "linear_attention", "hybrid"]),
    "gemma3n_text": dict(intermediate_size=[64] * N_LAYERS, layer_types=_ALTERNATE, vocab_size_per_layer_input=VOCAB,
                         hidden_size_per_layer_input=8, num_kv_shared_layers=2, laurel_rank=4,
                         activation_sparsity_pattern=[0.0] * N_LAYERS, altup_num_inputs=2),
    "recurrent_gemma": dict(lru_width=32, attention_window_size=4, block_types=["recurrent", "attention"],
                            logits_soft_cap=30.0),
    "rwkv": dict(attention_hidden_size=32, context_length=256),
    "opt": dict(word_embed_proj_dim=16, do_layer_norm_before=True),
    "cohere": dict(logit_scale=0.0625),
    "granite": dict(logits_scaling=8.0, embedding_multiplier=2.0, residual_multiplier=0.5, attention_multiplier=0.5),
    "gemma2": dict(final_logit_softcapping=5.0, attn_logit_softcapping=10.0, layer_types=_ALTERNATE),
    "gemma3_text": dict(layer_types=_ALTERNATE, final_logit_softcapping=5.0),
    "qwen3_next": dict(layer_types=["linear_attention", "full_attention"] * (N_LAYERS // 2), linear_key_head_dim=8,
                       linear_value_head_dim=8, linear_num_key_heads=2, linear_num_value_heads=4, head_dim=8),
    "falcon_h1": dict(mamba_d_ssm=32, mamba_n_heads=4, mamba_d_head=8, mamba_d_state=4, mamba_chunk_size=4),
    "minimax": dict(layer_types=["linear_attention", "full_attention"] * (N_LAYERS // 2), block_size=4),
    "lfm2": dict(layer_types=["conv", "full_attention"] * (N_LAYERS // 2), full_attn_idxs=[1, 3],
                 block_auto_adjust_ff_dim=False),
    "mistral": dict(sliding_window=4),
    "gpt_neo": dict(attention_types=[[["global", "local"], N_LAYERS // 2]],
                    attention_layers=["global", "local"] * (N_LAYERS // 2), window_size=4),
    "bloom": dict(n_head=4),
}

#: the decoders of the matrix (model_type names of ``transformers``)
DECODERS = (
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text",
    "gpt2", "gpt_neox", "gptj", "gpt_neo", "gpt_bigcode", "codegen", "phi", "phi3", "stablelm", "starcoder2",
    "olmo", "olmo2", "olmoe", "falcon", "bloom", "opt", "xglm", "cohere", "cohere2", "granite", "granitemoe",
    "minicpm3", "modernbert-decoder", "openai-gpt", "biogpt", "persimmon", "nemotron", "helium", "glm", "exaone4",
    "deepseek_v3", "smollm3", "mamba", "mamba2", "falcon_mamba", "recurrent_gemma", "rwkv", "jamba",
    "zamba", "bamba", "qwen3_next", "falcon_h1", "minimax", "lfm2",
)  # fmt: skip

#: the encoders of the matrix (``AutoModel``; no unembedding)
ENCODERS = ("bert", "roberta", "xlm-roberta", "deberta-v2", "electra", "distilbert", "modernbert")

#: architectures refused at load, with (a pattern of) the message that says why
REFUSED = {
    "gemma3n_text": "not one \\[B, T, 32\\] residual stream",  # AltUp: [n, B, T, D] states between blocks
    "albert": "could not find the transformer blocks",  # one shared layer applied L times: no block list
}


def tiny_config(model_type: str):
    """A small config of ``model_type`` (generic shrink + :data:`OVERRIDES`)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config = CONFIG_MAPPING[model_type]()
    for key, value in {**_SMALL, **OVERRIDES.get(model_type, {})}.items():
        if hasattr(config, key) or key in OVERRIDES.get(model_type, {}):
            with contextlib.suppress(AttributeError, TypeError, ValueError):
                setattr(config, key, value)
    types = getattr(config, "layer_types", None)
    if isinstance(types, list) and len(types) != N_LAYERS:
        config.layer_types = (types * N_LAYERS)[:N_LAYERS]
    return config


def build(model_type: str, seed: int = 0):
    """``(hf_model, config)``: a randomly initialised tiny model with perturbed norm weights.

    Norm weights are perturbed away from 1 so that a wrong or missing norm cannot hide behind an
    identity; the model is in eval mode.
    """
    from transformers import AutoModel, AutoModelForCausalLM

    config = tiny_config(model_type)
    torch.manual_seed(seed)
    auto = AutoModel if model_type in ENCODERS or model_type == "albert" else AutoModelForCausalLM
    hf = auto.from_config(config)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if "norm" in name.lower() or "ln" in name.lower().split(".")[-2:-1]:
                param.add_(0.3 * torch.randn(param.shape, generator=generator))
    return hf.eval(), config

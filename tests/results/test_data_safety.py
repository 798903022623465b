"""Data safety: ``--resume`` never destroys a file that is not its own, a changed config is an error
naming what changed (``--restart`` starts over), outputs honour the umask, capture's pair of files
is checked to belong together, and a killed write's temp file does not outlive the next write."""

import json
import os
import subprocess
import sys

import pytest
import torch

from layerscope.errors import ConfigError, ResultError
from layerscope.results.io import Checkpoint, atomic_write, write_text
from layerscope.results.states import read_states, write_states
from tests.conftest import save_model_dir
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return [save_model_dir(arch, tmp_path_factory.mktemp(arch)) for arch in ("llama", "gpt2")]


# ---- Checkpoint -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"my notes\nline two\n", b"\x89PNG\r\n\x1a\n\x00\xff\xfe", b"", b'{"key": 1}\n', b"[1, 2]\n", b'{"config": 3}\n'],
    ids=["text", "binary", "empty", "json-not-ours", "json-list", "config-not-a-dict"],
)
def test_a_file_that_is_not_a_checkpoint_is_refused_and_left_unchanged(tmp_path, content):
    path = tmp_path / "my_notes.txt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="not a layerscope checkpoint"):
        Checkpoint(path, {"model": "m"})
    with pytest.raises(ConfigError, match="not a layerscope checkpoint"):
        Checkpoint(path, {"model": "m"}, restart=True)  # --restart starts over checkpoints only
    assert path.read_bytes() == content


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        Checkpoint(tmp_path, {})


def test_another_config_is_an_error_naming_the_keys_and_restart_starts_over(tmp_path):
    path = tmp_path / "run.jsonl"
    first = Checkpoint(path, {"model": "m", "n": 3, "task": "a"})
    first.add(0, [{"value": 1.0}])
    before = path.read_bytes()
    with pytest.raises(ConfigError) as error:
        Checkpoint(path, {"model": "m", "n": 4, "seed": 1, "task": "a"})
    message = str(error.value)
    assert "n: 3 -> 4" in message and "seed (new)" in message and "--restart" in message
    assert "model" not in message.split("config")[1] and "task" not in message
    assert path.read_bytes() == before  # nothing lost
    again = Checkpoint(path, {"model": "m", "n": 4}, restart=True)
    assert len(again) == 0 and Checkpoint(path, {"model": "m", "n": 4}).rows() == []


def test_keys_that_do_not_change_results_do_not_count(tmp_path):
    path = tmp_path / "run.jsonl"
    Checkpoint(path, {"model": "m", "batch_budget": "1GB", "device": "cpu", "progress": True}).add(0, [{"v": 1}])
    again = Checkpoint(path, {"model": "m", "batch_budget": "64KB", "device": "cuda", "workers": 4})
    assert again.done(0) and again.rows() == [{"v": 1}]


def test_a_checkpoint_of_an_earlier_version_resumes(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"config": {"model": "m"}}) + "\n" + json.dumps({"key": 0, "rows": [{"v": 2}]}) + "\n")
    assert Checkpoint(path, {"model": "m"}).rows() == [{"v": 2}]


# ---- the CLI: refused before any model loads ------------------------------------------------------


def test_cli_resume_on_a_users_file_is_refused_before_loading(capsys, tmp_path):
    notes = tmp_path / "my_notes.txt"
    notes.write_text("do not delete me\n")
    argv = ["attend", "sweep", "--model", str(tmp_path / "no-such-model"), "--task", "copy", "--resume", str(notes)]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "" and "not a layerscope checkpoint" in err and "not found" not in err
    assert notes.read_text() == "do not delete me\n"


def test_cli_changed_config_errors_budget_does_not_and_restart_starts_over(capsys, model_dirs, tmp_path):
    resume = tmp_path / "r.jsonl"
    argv = ["metrics", "--models", ",".join(model_dirs), "--metrics", "prompt-entropy", "--json"]
    code, first, _ = run_cli(capsys, *argv, "--limit", "4", "--resume", str(resume))
    assert code == 0
    code, again, _ = run_cli(capsys, *argv, "--limit", "4", "--resume", str(resume), "--batch-budget", "64KB")
    assert code == 0 and json.loads(again) == json.loads(first)  # a budget change resumes
    code, out, err = run_cli(capsys, *argv, "--limit", "3", "--resume", str(resume))
    assert code == 2 and out == "" and "texts" in err and "--restart" in err
    code, out, _ = run_cli(capsys, *argv, "--limit", "3", "--resume", str(resume), "--restart")
    assert code == 0 and json.loads(out) != json.loads(first)


@pytest.mark.parametrize("option", ["--out", "--save"])
def test_cli_unwritable_output_fails_before_loading(capsys, tmp_path, option):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where the output's folder should be: unwritable even for root
    target = blocker / ("out.png" if option == "--out" else "out.csv")
    argv = ["sweep", "--model", str(tmp_path / "none"), "--clean", "a", "--corrupt", "b"]
    code, out, err = run_cli(capsys, *argv, "--answer", " a", "--wrong", " b", option, str(target))
    assert code == 2 and "cannot write" in err and "not found" not in err


# ---- files: mode, temp files, capture's pair ------------------------------------------------------


def test_written_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        shared = write_text(tmp_path / "report.html", "<p>hi</p>")
        os.umask(0o077)
        private = write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert shared.stat().st_mode & 0o777 == 0o644
    assert private.stat().st_mode & 0o777 == 0o600


def test_a_killed_writes_temp_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "rows.csv"
    # a writer killed mid-write: its temp file (named with its PID) stays behind
    code = (
        "import os, sys; from layerscope.results.io import atomic_write; "
        f"atomic_write({str(target)!r}, lambda tmp: (tmp.write_text('half'), os._exit(9)))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 9
    left = list(tmp_path.glob(".rows.csv.*.tmp"))
    assert len(left) == 1 and not target.exists()
    atomic_write(target, lambda tmp: tmp.write_text("a,b\n"))
    assert target.read_text() == "a,b\n" and list(tmp_path.glob(".rows.csv.*.tmp")) == []


def test_capture_pair_is_checked_to_belong_together(tmp_path):
    path = tmp_path / "states.safetensors"
    write_states(path, {"resid_post": torch.zeros(2, 1, 3, 4)}, {"layout": {"shape": [2, 1, 3, 4]}})
    tensors, sidecar = read_states(path)
    assert tensors["resid_post"].shape == (2, 1, 3, 4) and sidecar["layout"]["shape"] == [2, 1, 3, 4]
    # a run killed between the two files: new tensors beside the old sidecar
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file({"resid_post": torch.ones(5, 1, 3, 4)}, str(tmp)))
    with pytest.raises(ResultError, match="does not describe"):
        read_states(path)


def test_capture_sidecar_tokens_are_decoded(capsys, default_model, tmp_path):
    target = tmp_path / "states.safetensors"
    argv = ["capture", "The capital of France", "--layers", "0", "--out", str(target)]
    code, _, _ = run_cli(capsys, *argv)
    _, sidecar = read_states(target)
    assert code == 0 and sidecar["tokens"][0] == ["The", " capital", " of", " France"]  # not 'Ġcapital'

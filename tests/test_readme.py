"""Every example in the README runs: the Python block, and each `layerscope` command line."""

import re
import shlex
from pathlib import Path

import pytest

from layerscope.cli.main import main

README = (Path(__file__).parents[1] / "README.md").read_text()
pytestmark = pytest.mark.integration


def test_python_examples_run(capsys):
    for block in re.findall(r"```python\n(.*?)```", README, re.S):
        exec(compile(block, "README.md", "exec"), {})
    assert " Paris" in capsys.readouterr().out


COMMANDS = [
    line.split("  #")[0].strip()
    for block in re.findall(r"```bash\n(.*?)```", README, re.S)
    for line in block.splitlines()
    if line.startswith("layerscope ")
]


#: a `layerscope rerun` line repeats the line before it: that one runs first, in the same folder
SETUP = {cmd: COMMANDS[i - 1] for i, cmd in enumerate(COMMANDS) if cmd.startswith("layerscope rerun ")}


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_examples_run(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if command in SETUP:
        assert main(shlex.split(SETUP[command])[1:]) == 0, capsys.readouterr().err
        capsys.readouterr()
    argv = shlex.split(command)[1:]
    assert main(argv) == 0, capsys.readouterr().err


def test_rerun_example_gives_the_saved_rows(tmp_path, monkeypatch, capsys):
    import json

    import pandas as pd

    from layerscope.results.io import table_records

    (rerun,) = SETUP
    monkeypatch.chdir(tmp_path)
    assert main(shlex.split(SETUP[rerun])[1:]) == 0
    capsys.readouterr()
    assert main(shlex.split(rerun)[1:]) == 0
    rows = json.loads(capsys.readouterr().out)
    saved = table_records(pd.read_parquet(next(tmp_path.glob("*.parquet"))))
    assert [{k: r[k] for k in ("model", "method", "layer", "position", "top_token")} for r in rows] == [
        {k: r[k] for k in ("model", "method", "layer", "position", "top_token")} for r in saved
    ]
    assert [r["prob"] for r in rows] == pytest.approx([r["prob"] for r in saved], rel=1e-9)

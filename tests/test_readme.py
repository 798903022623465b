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


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_examples_run(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(command)[1:]
    assert main(argv) == 0, capsys.readouterr().err

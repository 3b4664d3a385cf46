"""The README's two set-up commands are the ones CI and users run."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def setup_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_starts_with_exactly_two_setup_commands():
    quickstart, tests = setup_commands()
    assert quickstart.endswith("python examples/quickstart.py")
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = setup_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci

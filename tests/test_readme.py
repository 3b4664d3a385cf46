"""The README's two set-up commands are the ones CI and users run."""

import contextlib
import io
import pathlib
import re

import pytest

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


# ----------------------------------------------------------------------------- issue 15:
# every README statement a test can check is checked here.


def readme_section(title: str) -> str:
    """The text under the heading ``title`` (any level), up to the next heading of the same
    or a higher level."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^(#+) {re.escape(title)}\n", text, re.M)
    assert match, f"no README section {title!r}"
    level = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def table_options(text: str) -> list:
    """The option names of the first ``| option | meaning | default |`` table in ``text``."""
    start = text.index("| option | meaning | default |")
    names = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        names.append(re.match(r"\| `(\w+)` \|", line).group(1))
    return names


def service_options(service_name: str) -> list:
    from loghandlers.__main__ import handler_classes

    return [option.name for option in handler_classes()[service_name].service_class.options]


def test_the_common_options_table_is_the_options_table():
    from loghandlers.options import COMMON

    assert table_options(readme_section("Options")) == [option.name for option in COMMON]


def test_the_json_options_table_is_the_json_handlers_options():
    assert table_options(readme_section("JSON")) == service_options("json")


@pytest.mark.parametrize(
    "service, title",
    [
        ("samsara", "Samsara"),
        ("initialstate", "Initial State"),
        ("panoply", "Panoply"),
        ("kronos", "Kronos"),
        ("otlp", "OpenTelemetry (OTLP/HTTP)"),
    ],
)
def test_each_service_section_names_every_option_of_its_handler(service, title):
    text = readme_section(title)
    for name in service_options(service):
        spellings = (f'"{name}"', f"`{name}`", f"_{name.upper()}`")
        assert any(s in text for s in spellings), f"{title}: option {name} is not documented"


def help_text(parser, command) -> str:
    """What ``python -m loghandlers [command] --help`` prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parser.parse_args([command, "--help"] if command else ["--help"])
    return out.getvalue()


def test_the_command_line_usage_matches_each_commands_help():
    from loghandlers.__main__ import build_parser

    block = re.search(r"```sh\n(.*?)```", readme_section("The command line"), re.S).group(1)
    lines = [line for line in block.splitlines() if line.startswith("python -m loghandlers ")]
    parser = build_parser()
    documented = set()
    for line in lines:
        command = line.split()[3]
        documented.add(command)
        usage = help_text(parser, command)
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", line.split("#")[0]):
            assert flag in usage, f"`{command} {flag}` is in the README, not in --help"
    everything = help_text(parser, None)
    listed = re.search(r"\{([\w,-]+)\}", everything).group(1).split(",")
    assert documented == set(listed), "every sub-command is in the README"


def test_files_the_readme_refers_to_exist():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    paths = re.findall(r"`((?:[\w.-]+/)+[\w.-]+\.(?:py|md|toml|cfg|yaml|json))`", text)
    paths += re.findall(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.md)\b", text)
    assert links and paths
    for path in links + paths:
        assert (ROOT / path).exists(), f"README refers to {path}, which is not in the repo"


def test_tests_the_readme_cites_exist_and_carry_the_marks_it_says():
    text = (ROOT / "README.md").read_text()
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    for name in set(re.findall(r"`(test_\w+)`", text)):
        assert f"def {name}(" in sources, f"README cites {name}, which is not a test"
    for mark in set(re.findall(r"marked `(\w+)`", text)):
        assert f"@pytest.mark.{mark}" in sources, f"README says a test is marked {mark}"

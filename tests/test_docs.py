"""The README and docs/: every `frontier` command they show parses with today's command line, and
every docs/ page the README links exists."""
import re
import shlex
from pathlib import Path

import pytest

from frontier.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def commands(text: str) -> list[str]:
    """The `frontier ...` command lines of a page's shell blocks (continuations joined, comments cut)."""
    out = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            # A command inside a quoted remote call (ray job submit -- 'frontier train ...').
            for inner in re.findall(r"'(frontier [^']*)'", line):
                out.append(inner)
            if line.startswith("frontier "):
                out.append(line)
    return out


CASES = [(page.relative_to(ROOT), cmd) for page in PAGES for cmd in commands(page.read_text())]


def test_the_pages_show_commands():
    assert len(CASES) >= 10


@pytest.mark.parametrize("page, command", CASES, ids=[f"{p}: {c[:50]}" for p, c in CASES])
def test_every_shown_command_parses(page, command):
    argv = shlex.split(command)[1:]
    build_parser().parse_args(argv)  # argparse exits (SystemExit) on an unknown option or command


def test_every_linked_docs_page_exists():
    for page in PAGES:
        for link in re.findall(r"\]\((docs/[^)#]+)", page.read_text()):
            assert (ROOT / link).is_file(), f"{page.name} links {link}"


def test_every_help_example_parses():
    # The examples in each command's --help epilog are real command lines.
    import argparse

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    shown = []
    for name, p in sub.choices.items():
        shown += [line.split("#")[0].split(">")[0].split()[1:] for line in (p.epilog or "").splitlines()
                  if line.strip().startswith("frontier ")]
    assert len(shown) >= 12
    for argv in shown:
        build_parser().parse_args(argv)

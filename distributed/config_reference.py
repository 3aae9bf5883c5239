"""The configuration reference (docs/config.md), generated from the config dataclasses' docstrings."""
from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing

import yaml

from frontier.distributed.config import RunConfig, to_dict


def _field_docs(cls: type) -> dict[str, str]:
    """{field: the docstring written under it} of a config dataclass, read from its source."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def reference() -> str:
    """The configuration reference (docs/config.md): every key with its default and its docstring,
    section by section."""
    defaults = to_dict(RunConfig())
    lines = ["# Configuration reference", "",
             "Every key of a run config, its default and what it does. Generated from the config dataclasses' "
             "docstrings (`make docs`; tests/distributed/test_config.py checks it is current). A config file "
             "sets any subset; `frontier train CONFIG --print-config` shows the resolved whole.", ""]

    def table(cls: type, values: dict, prefix: str) -> list[str]:
        docs = _field_docs(cls)
        rows = ["| key | default | |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(typing.get_type_hints(cls)[f.name]):
                continue
            default = yaml.safe_dump(values[f.name], default_flow_style=True, width=10_000).strip()
            default = default.removesuffix("\n...").removesuffix(" ...").strip()
            doc = docs.get(f.name, "").replace("|", "\\|")
            rows.append(f"| `{prefix}{f.name}` | `{default}` | {doc} |")
        return rows

    lines += ["## Top level", "", *table(RunConfig, defaults, ""), ""]
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        cls = hints[f.name]
        if dataclasses.is_dataclass(cls):
            doc = cls.__doc__ or ""
            intro = [] if doc.startswith(cls.__name__ + "(") else [" ".join(doc.split()), ""]  # not dataclass's own
            lines += [f"## {f.name}", "", *intro, *table(cls, defaults[f.name], f"{f.name}."), ""]
    return "\n".join(lines)

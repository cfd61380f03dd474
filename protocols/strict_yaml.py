"""YAML as meterhub reads its own files (firmware profiles, rule sets): safe and unambiguous.

PyYAML's safe loader quietly keeps the last of two equal keys in a mapping,
so a profile listing a channel twice or a rule set giving a threshold twice
would load with one of them silently gone. Here a repeated key is an error,
and every error reads as a line and column a person can go to.

Example::

    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        print(describe_yaml_error(exc))   # "line 4, column 3: found duplicate key 'factor'"
"""

from __future__ import annotations

from typing import Any

import yaml


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key written twice in one mapping is an error."""


def _unique_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode,
                    deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # unhashable: the safe loader reports it below
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(text: str) -> Any:
    """``text`` as YAML through :class:`UniqueKeyLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """Where and what: ``line L, column C: problem (context)``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:
        context = getattr(exc, "context", None)
        detail = f"{problem} ({context})" if context else problem
        return f"line {mark.line + 1}, column {mark.column + 1}: {detail}"
    return " ".join(str(exc).split())

"""YAML reading that keeps the source line of every key and list item."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_NODES = 200_000  # expanded size allowed for one document (alias bombs stop here)


class LineDict(dict[str, Any]):
    """A mapping that remembers its own line and the line of each key."""

    line: int
    key_lines: dict[Any, int]


class LineList(list[Any]):
    """A list that remembers its own line and the line of each item."""

    line: int
    item_lines: list[int]


class DuplicateKey(yaml.MarkedYAMLError):
    pass


class TooLarge(yaml.MarkedYAMLError):
    pass


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> LineDict:  # type: ignore[override]
        self.flatten_mapping(node)
        out = LineDict()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "found an unhashable or non-scalar key", key_node.start_mark,
                )
            if key in out:
                raise DuplicateKey(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r} (first on line {out.key_lines[key]})",
                    key_node.start_mark,
                )
            out[key] = self.construct_object(value_node, deep=True)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out

    def construct_sequence(self, node: SequenceNode, deep: bool = False) -> LineList:  # type: ignore[override]
        out = LineList(self.construct_object(child, deep=True) for child in node.value)
        out.line = node.start_mark.line + 1
        out.item_lines = [child.start_mark.line + 1 for child in node.value]
        return out


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_sequence)


def _expanded_size(node: Node, budget: int) -> int:
    """Count nodes as if every alias were copied, stopping past ``budget``."""
    seen = 0
    stack = [node]
    while stack:
        current = stack.pop()
        seen += 1
        if seen > budget:
            return seen
        if isinstance(current, MappingNode):
            for key, value in current.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(current, SequenceNode):
            stack.extend(current.value)
    return seen


def load_documents(text: str, name: str) -> list[tuple[int, Any]]:
    """Parse every document of ``text``; return (first line, data) pairs.

    Raises ``yaml.YAMLError`` (with a mark) on syntax errors, duplicate keys
    and documents too large once aliases are expanded.
    """
    loader = _Loader(text)
    loader.name = name
    docs: list[tuple[int, Any]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            if _expanded_size(node, MAX_NODES) > MAX_NODES:
                raise TooLarge(
                    None, None,
                    f"document expands to more than {MAX_NODES} YAML nodes (an alias bomb?)",
                    node.start_mark,
                )
            line = node.start_mark.line + 1
            if isinstance(node, ScalarNode) and node.value == "" and node.tag.endswith(":null"):
                docs.append((line, None))
                continue
            docs.append((line, loader.construct_document(node)))
    finally:
        loader.dispose()
    return docs

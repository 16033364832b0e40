"""YAML reading that keeps the source line of every key and list item."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_NODES = 200_000  # expanded size allowed for one document (alias bombs stop here)
MAX_DEPTH = 100  # nesting allowed; PyYAML composes recursively and would hit RecursionError


class LineDict(dict[Any, Any]):
    """A mapping that remembers its own line and the line of each key."""

    line: int
    key_lines: dict[Any, int]
    duplicates: list[tuple[Any, int, int]]  # (key, line, line of the first one): the loader reports them


class LineList(list[Any]):
    """A list that remembers its own line and the line of each item."""

    line: int
    item_lines: list[int]


class TooLarge(yaml.MarkedYAMLError):
    """A document too big or too deep once aliases are expanded."""


class _Loader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise TooLarge(
                    None,
                    None,
                    f"document nests deeper than {MAX_DEPTH} levels; flatten it",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> LineDict:
        own = {id(key) for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"}
        self.flatten_mapping(node)
        out = LineDict()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        out.duplicates = []
        merged: set[Any] = set()
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, dict | list):  # unhashable; other scalars (dates too) are checked later
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found a {'mapping' if isinstance(key, dict) else 'list'} as a key; keys are plain scalars",
                    key_node.start_mark,
                )
            line = key_node.start_mark.line + 1
            if key in out and key not in merged:  # written twice: keep the first, report it
                out.duplicates.append((key, line, out.key_lines[key]))
                continue
            # flatten_mapping puts merged keys (`<<: *base`) first, ordered so that
            # overwriting gives YAML's precedence; a key written out overrides them.
            if id(key_node) in own:
                merged.discard(key)
            else:
                merged.add(key)
            out[key] = self.construct_object(value_node, deep=True)
            out.key_lines[key] = line
        return out

    def construct_sequence(self, node: SequenceNode, deep: bool = False) -> LineList:
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

    Raises ``yaml.YAMLError`` (with a mark) on syntax errors and documents
    too large or too deep once aliases are expanded. Duplicate keys are not
    errors here: each ``LineDict`` lists its own for the loader to report
    with their field path. Empty documents (a stray ``---``) are skipped.
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
                    None,
                    None,
                    f"document expands to more than {MAX_NODES} YAML nodes once aliases are expanded"
                    " (an alias bomb?); write the data out or split the file",
                    node.start_mark,
                )
            if isinstance(node, ScalarNode) and node.value == "" and node.tag.endswith(":null") and not node.style:
                continue
            docs.append((node.start_mark.line + 1, loader.construct_document(node)))
    finally:
        loader.dispose()
    return docs

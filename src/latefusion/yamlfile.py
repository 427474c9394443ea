"""YAML for run configs and `--set` values: PyYAML's safe loader with three changes.

- A key given twice in one mapping (two `train:` sections, say) is refused, naming the key and its lines;
  plain YAML keeps the last one silently.
- Aliases are bounded: a document whose aliases would expand it by more than `MAX_ALIAS_NODES` nodes
  (a "billion laughs" alias bomb) is refused before anything is built, and so is an alias inside its
  own anchor (a recursive structure). Without aliases a document is as large as its text.
- Only `true`/`false` (and their `True`/`TRUE`/`False`/`FALSE` spellings) are booleans, as in YAML 1.2:
  YAML 1.1 also turns `on`/`off`/`yes`/`no` into booleans, and options documented with those values
  (e.g. `teacher_cache: off`) must arrive as the strings written. Where a bool is expected, the
  pydantic models accept "on"/"off"/"yes"/"no" anyway.

`load(text, source)` returns the Python value or raises `YAMLRefused` (a message that starts with
`source`) or `yaml.YAMLError` (text that is not YAML).
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

# How many nodes aliases may add to a document. A run config has about a hundred nodes.
MAX_ALIAS_NODES = 100_000

BOOL_TAG = "tag:yaml.org,2002:bool"
MERGE_TAG = "tag:yaml.org,2002:merge"

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 80
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 8
_repr.maxlevel = 3


def short_repr(value: Any, limit: int = 200) -> str:
    """repr() for error messages: bounded in length and in the work it takes, whatever the value."""
    try:
        text = _repr.repr(value)
    except Exception:  # a repr that fails is no reason to lose the error it is part of
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class YAMLRefused(ValueError):
    """YAML that parses but is refused: a duplicated key, an alias bomb, a value that cannot be built."""


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, duplicate keys refused and aliases bounded (see the module)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    source = "<yaml>"

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        # The keys as written: the safe constructor rewrites node.value when it resolves `<<: *base` merges,
        # whose keys the mapping may override.
        node.written_keys = [key for key, _ in node.value if key.tag != MERGE_TAG]
        return node

    def construct_mapping(self, node: Node, deep: bool = False) -> dict:
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node in getattr(node, "written_keys", ()):
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the safe constructor refuses it below
                    continue
                if first is not None:
                    raise YAMLRefused(f"{self.source}, line {line}: duplicated key {short_repr(key)} (first at line "
                                      f"{first}); a key may be given once per mapping")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


ConfigLoader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _check_aliases(root: Node, source: str) -> None:
    """Refuse a node graph whose aliases expand it by more than MAX_ALIAS_NODES, or that contains itself.

    Aliases make the graph a DAG whose nodes are shared; its expanded size (each node counted once per
    path to it) is computed once per distinct node, without expanding anything.
    """
    size: dict[int, int] = {}  # id(node) -> expanded size, capped
    cap = 10**15  # keeps the sums small numbers; far beyond any limit
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in size:
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, MappingNode)
                    else node.value if isinstance(node, SequenceNode) else [])
        if children_done:
            on_path.discard(id(node))
            size[id(node)] = min(cap, 1 + sum(size[id(child)] for child in children))
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise YAMLRefused(f"{source}, line {child.start_mark.line + 1}: an alias refers to a node that "
                                  f"contains it (a recursive structure), which a config cannot hold")
            if id(child) not in size:
                stack.append((child, False))
    expanded, distinct = size[id(root)], len(size)
    if expanded - distinct > MAX_ALIAS_NODES:
        raise YAMLRefused(f"{source}: its aliases expand it by more than {MAX_ALIAS_NODES} nodes "
                          f"({distinct} written); refused as an alias bomb")


def load(text: str, source: str) -> Any:
    """The value of the YAML document `text` (None if empty); `source` names it in error messages."""
    loader = ConfigLoader(text)
    loader.name = loader.source = source  # marks in yaml.YAMLError messages name the source too
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(node, source)
        return loader.construct_document(node)
    except RecursionError:
        raise YAMLRefused(f"{source}: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as error:
        if isinstance(error, YAMLRefused):
            raise
        # A value that matched a YAML type but cannot be built (`2020-13-01`, `!!float abc`).
        raise YAMLRefused(f"{source}: a value cannot be read: {short_repr(str(error))}") from None
    finally:
        loader.dispose()

"""Edit a spec's ``dependencies`` in its YAML text, keeping comments, key order, quoting and flow lists.

PyYAML forgets comments and styles on load; ``ruamel.yaml``'s round-trip mode keeps them, so a team's
hand-written notes and layout survive ``nthlayer discover --write``. The one thing it cannot take from a
file is indentation (one setting per dump): it is measured from the text, and a candidate is kept only
if the untouched document dumps back to the very same bytes.
"""
from __future__ import annotations

import io
import re
from typing import Any, Iterable

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken

from generators.discovery import Proposal, TechnologyUse
from generators.errors import UserError

# Keys that conventionally follow `dependencies` (the order of docs/spec.md): a new block goes before them.
_AFTER_DEPENDENCIES = ("pagerduty", "datadog", "kubernetes", "slos")
_ITEM = re.compile(r"^( *)-( +)\S")
_KEY = re.compile(r"^( *)[^\s#-][^:]*:\s*(#.*)?$")


def _indent_candidates(text: str) -> list[tuple[int, int, int]]:
    """(mapping, sequence, offset) settings to try: those measured in the text first (the indent of the first
    nested key, the dash offset of the first block sequence under a key), then the common ones."""
    mappings: list[int] = []
    offsets: list[tuple[int, int]] = []  # (dash offset under the key, dash to item text)
    lines = text.splitlines()
    for before, line in zip(lines, lines[1:]):
        key = _KEY.match(before)
        if not key:
            continue
        item = _ITEM.match(line)
        nested = len(line) - len(line.lstrip(" "))
        if item and not offsets:
            offsets.append((max(0, len(item.group(1)) - len(key.group(1))), 1 + len(item.group(2))))
        elif not item and line.strip() and not line.lstrip().startswith("#") and nested > len(key.group(1)) \
                and not mappings:
            mappings.append(nested - len(key.group(1)))
    candidates = []
    for mapping in dict.fromkeys(mappings + [2, 4]):
        for offset, gap in dict.fromkeys(offsets + [(2, 2), (0, 2)]):
            candidates.append((mapping, offset + gap, offset))
    return candidates


def _yaml(indent: tuple[int, int, int], explicit_start: bool) -> YAML:
    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line the author wrote on one
    mapping, sequence, offset = indent
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.explicit_start = explicit_start
    return yaml


def _dump(yaml: YAML, document: Any) -> str:
    stream = io.StringIO()
    yaml.dump(document, stream)
    return stream.getvalue()


def _load(text: str, path: str) -> tuple[YAML, Any]:
    """The document and the dumper that writes its untouched form back byte for byte."""
    head = next((line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    explicit = head.startswith("---")  # a document start marker, after any leading comments
    candidates = _indent_candidates(text)
    first: tuple[YAML, Any] | None = None
    for indent in candidates:
        yaml = _yaml(indent, explicit)
        document = yaml.load(text)
        if _dump(yaml, document) == text:
            return yaml, document
        first = first or (yaml, document)
    if first is None or not isinstance(first[1], CommentedMap):
        raise UserError(f"{path}: not a YAML mapping; cannot edit it")
    return first  # the diff shows whatever layout differs: the user sees it before --write


def _flow(mapping: dict[str, str]) -> CommentedMap:
    node = CommentedMap(mapping)
    node.fa.set_flow_style()
    return node


def _technology_entry(use: TechnologyUse) -> CommentedMap:
    entry = CommentedMap()
    entry["type"] = use.technology
    entry["name"] = use.name
    entry["selector"] = _flow({use.instance_label: use.instance})
    return entry


def _trailing_slot(node: Any) -> tuple[Any, Any, int] | None:
    """(comment table, key, slot) of the comment after the last item of a block collection. ruamel hangs a
    comment written before the *next* key there (after the item's own end-of-line comment), so an item
    appended after it would land below it: :func:`_take_following` and :func:`_put_following` move it."""
    if isinstance(node, CommentedSeq) and len(node) and not node.fa.flow_style():
        last = len(node) - 1
        return _trailing_slot(node[last]) or (node.ca.items, last, 0)
    if isinstance(node, CommentedMap) and len(node) and not node.fa.flow_style():
        last_key = list(node)[-1]
        return _trailing_slot(node[last_key]) or (node.ca.items, last_key, 2)
    return None


def _take_following(node: Any) -> str | None:
    """Detach the comment lines after the last item of ``node`` (its end-of-line comment stays)."""
    slot = _trailing_slot(node)
    if slot is None:
        return None
    table, key, index = slot
    entry = table.get(key)
    token = entry[index] if entry else None
    if token is None or "\n" not in token.value:
        return None
    own, _newline, following = token.value.partition("\n")
    if not following:
        return None
    if own:
        token.value = own + "\n"
    else:
        entry[index] = None
        if not any(entry):
            del table[key]
    return following


def _put_following(node: Any, following: str | None) -> None:
    """Hang ``following`` (from :func:`_take_following`) after the last item of ``node``."""
    slot = _trailing_slot(node) if following else None
    if slot is None:
        return
    table, key, index = slot
    entry = table.setdefault(key, [None, None, None, None])
    if entry[index] is not None:
        entry[index].value = entry[index].value.rstrip("\n") + "\n" + following
    else:
        entry[index] = CommentToken("\n" + following, CommentMark(0), None)


def _append(seq: CommentedSeq, values: Iterable[Any]) -> None:
    """Append to a sequence; comment lines that followed its last item follow the new last item."""
    values = list(values)
    if values:
        following = _take_following(seq)
        seq.extend(values)
        _put_following(seq, following)


def _remove(seq: CommentedSeq, indexes: Iterable[int]) -> None:
    """Delete items (ruamel shifts their comments along); the lines after the last stay at the end."""
    following = _take_following(seq)
    for index in sorted(set(indexes), reverse=True):
        del seq[index]
    _put_following(seq, following)


def _dependencies(document: CommentedMap) -> CommentedMap:
    deps = document.get("dependencies")
    if isinstance(deps, CommentedMap):
        return deps
    deps = CommentedMap()
    keys = list(document)
    position = next((keys.index(k) for k in keys if k in _AFTER_DEPENDENCIES), len(keys))
    if "dependencies" in document:  # `dependencies:` with nothing under it (null)
        position = keys.index("dependencies")
        del document["dependencies"]
    document.insert(position, "dependencies", deps)
    return deps


def apply_proposal(text: str, path: str, proposal: Proposal) -> str:
    """The spec text with ``proposal`` applied; the text itself when it changes nothing."""
    if not proposal.changes:
        return text
    yaml, document = _load(text, path)
    deps = _dependencies(document)
    upstream = deps.get("upstream")
    if proposal.remove_upstream and isinstance(upstream, CommentedSeq):
        _remove(upstream, [i for i, name in enumerate(upstream) if name in proposal.remove_upstream])
    if proposal.add_upstream:
        names = sorted(edge.server for edge in proposal.add_upstream)
        if isinstance(upstream, CommentedSeq):
            _append(upstream, names)
        else:
            upstream = CommentedSeq(names)
            upstream.fa.set_flow_style()  # `upstream: [a, b]`, as the examples write it
            if "upstream" in deps:
                del deps["upstream"]
            deps.insert(0, "upstream", upstream)
    technologies = deps.get("technologies")
    if proposal.remove_technologies and isinstance(technologies, CommentedSeq):
        _remove(technologies, [index for index, _name in proposal.remove_technologies])
    if proposal.add_technologies:
        entries = [_technology_entry(use) for use in proposal.add_technologies]
        if isinstance(technologies, CommentedSeq):
            _append(technologies, entries)
        else:
            if "technologies" in deps:
                del deps["technologies"]
            deps["technologies"] = CommentedSeq(entries)
    return _dump(yaml, document)


__all__ = ["apply_proposal"]

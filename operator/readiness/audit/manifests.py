"""Manifests as ``readiness audit`` reads them: files, directories and stdin, multi-document
YAML or JSON, Lists expanded; every object knows where it came from (file, document, line).

A document that is not a Kubernetes object (no ``apiVersion`` and ``kind``) is left out: a
directory may hold other YAML. What cannot be read is an ``InputError`` naming the file (and the
line, for YAML that does not parse), never an exception.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"
STDIN_NAME = "<stdin>"  # stdin, as errors and reports name it
# libyaml when PyYAML has it: a 1,000-Deployment `kubectl get -o yaml` List loads in 0.56 s, not 0.98 s.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FIELD_PART = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")


@dataclass(frozen=True)
class Document:
    """One Kubernetes object of the input, and where it is."""

    body: Mapping[str, Any]
    source: str = "<input>"  # the file as the user named it (or found it in a directory), or <stdin>
    index: int = 0  # the YAML document of the file it is in, from 0
    line: int = 1  # where the object starts, from 1 (an item of a List: where the item starts)
    node: yaml.Node | None = field(default=None, compare=False, repr=False)

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion", ""))

    @property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.body.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    def line_of(self, dotted: str) -> int:
        """The line of a field given as status and errors name it (``spec.probes.port``,
        ``spec.template.spec.containers[app].env``): of the field itself when the document has
        it, else of the deepest part of its path that it has, else where the object starts."""
        node, line = self.node, self.line
        for name, selector in _FIELD_PART.findall(dotted):
            if isinstance(node, yaml.MappingNode) and name:
                found = next(((k, v) for k, v in node.value if k.value == name), None)
                if found is None:
                    break
                line, node = found[0].start_mark.line + 1, found[1]
            elif isinstance(node, yaml.SequenceNode) and not name:
                item = _item(node, selector)
                if item is None:
                    break
                line, node = item.start_mark.line + 1, item
            else:
                break
        return line


def _item(node: yaml.SequenceNode, selector: str) -> yaml.Node | None:
    """The list item ``[selector]`` names: by its ``name`` (containers, env, ports), by the values
    of its keys (``[8080,TCP]``), or by position."""

    def scalars(item: yaml.Node) -> dict[str, str]:
        if not isinstance(item, yaml.MappingNode):
            return {}
        return {k.value: v.value for k, v in item.value if isinstance(v, yaml.ScalarNode)}

    items: list[yaml.Node] = list(node.value)
    named = next((i for i in items if scalars(i).get("name") == selector), None)
    if named is not None:
        return named
    parts = selector.split(",")
    keyed = next((i for i in items if parts and all(p in scalars(i).values() for p in parts)), None)
    if keyed is not None:
        return keyed
    if selector.isdigit() and int(selector) < len(items):
        return items[int(selector)]
    return None


@dataclass(frozen=True)
class InputError:
    """Input that cannot be read: a missing or unreadable file, YAML that does not parse."""

    source: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.message}"


def read(paths: Sequence[str], stdin: IO[str]) -> tuple[list[Document], list[InputError]]:
    """Every Kubernetes object in ``paths`` (files, directories read recursively for
    *.yaml, *.yml and *.json, ``-`` for ``stdin``; no path at all means stdin)."""
    documents: list[Document] = []
    errors: list[InputError] = []
    for source, text, error in _texts(paths or [STDIN], stdin):
        if error is not None:
            errors.append(error)
            continue
        found, problems = parse(text, source)
        documents += found
        errors += problems
    return documents, errors


def _texts(paths: Sequence[str], stdin: IO[str]) -> Iterator[tuple[str, str, InputError | None]]:
    seen: set[str] = set()
    for given in paths:
        if given == STDIN:
            if STDIN not in seen:
                seen.add(STDIN)
                yield _decoded(STDIN_NAME, stdin)
            continue
        path = Path(given)
        if path.is_dir():
            unreadable: list[OSError] = []
            files = sorted(_manifests_below(path, unreadable.append))
            for error in unreadable:
                shown = str(error.filename or given)
                yield _unreadable(shown, error)
            if not files and not unreadable:
                yield (
                    given,
                    "",
                    InputError(
                        given,
                        None,
                        f"no {', '.join('*' + s for s in SUFFIXES)} file in this directory; name the files or the directory that holds the manifests",
                    ),
                )
            for found in files:
                yield from _text(os.path.join(given, found.relative_to(path)), found, seen)
        elif path.exists():
            yield from _text(given, path, seen)
        else:
            yield (
                given,
                "",
                InputError(
                    given,
                    None,
                    "no such file or directory; check the path (a directory is read recursively for *.yaml, *.yml and *.json, `-` reads stdin)",
                ),
            )


def _manifests_below(directory: Path, unreadable: Callable[[OSError], None]) -> Iterator[Path]:
    """Manifest files below ``directory``; hidden files and directories (.git, .github) are
    skipped. Linked directories are followed (a shared base is as much a part of the repository
    as a copy), each real directory once, so a link loop ends."""
    visited: set[str] = set()
    for root, dirs, files in os.walk(directory, followlinks=True, onerror=unreadable):
        real = os.path.realpath(root)
        if real in visited:
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.endswith(SUFFIXES):
                yield Path(root, name)


def _decoded(shown: str, stream: IO[str]) -> tuple[str, str, InputError | None]:
    raw = getattr(stream, "buffer", None)
    try:
        text = raw.read().decode("utf-8") if raw is not None else stream.read()
    except UnicodeDecodeError:
        return shown, "", InputError(shown, None, "is not UTF-8 text; save it as UTF-8 or leave it out")
    except (OSError, ValueError) as error:  # closed or unreadable
        return shown, "", InputError(shown, None, f"cannot be read ({error})")
    return shown, text, None


def _unreadable(shown: str, error: OSError) -> tuple[str, str, InputError]:
    return (
        shown,
        "",
        InputError(shown, None, f"cannot be read ({error.strerror or error}); check its permissions"),
    )


def _text(shown: str, path: Path, seen: set[str]) -> Iterator[tuple[str, str, InputError | None]]:
    try:
        key = str(path.resolve(strict=True))
    except (OSError, RuntimeError):  # a dangling link or a link loop
        yield (
            shown,
            "",
            InputError(shown, None, "is a link that leads nowhere (or in a loop); fix or remove the link"),
        )
        return
    if key in seen:
        return
    seen.add(key)
    try:
        yield shown, path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError:
        yield shown, "", InputError(shown, None, "is not UTF-8 text; save it as UTF-8 or leave it out")
    except OSError as error:
        yield _unreadable(shown, error)


def parse(text: str, source: str = "<input>") -> tuple[list[Document], list[InputError]]:
    """The Kubernetes objects of one file's ``text`` (YAML, multi-document, or JSON), Lists
    expanded at any depth; YAML that does not parse is an error at its line."""
    documents: list[Document] = []
    loader = _Loader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                repeated = _repeated_key(node)
                if repeated is not None:
                    key, at = repeated
                    return documents, [
                        InputError(
                            source,
                            at,
                            f"is not valid YAML for kubectl: the key {key!r} appears twice in one mapping "
                            "(YAML would keep the last silently; kubectl refuses it); keep one",
                        )
                    ]
                documents += _objects(loader.construct_document(node), node, source, index)
            index += 1
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = error.problem or error.context or "cannot parse"
        if error.context and error.problem:
            started = error.context_mark.line + 1 if error.context_mark is not None else None
            problem += f" ({error.context}{f' started at line {started}' if started else ''})"
        return documents, [
            InputError(source, line, f"is not valid YAML: {problem}; fix the syntax at that line")
        ]
    except yaml.YAMLError as error:
        return documents, [InputError(source, None, f"is not valid YAML: {error}; fix the file's syntax")]
    finally:
        loader.dispose()
    return documents, []


def _repeated_key(root: yaml.Node) -> tuple[str, int] | None:
    """The first key that a mapping of ``root`` holds twice, and its second line (walked
    without recursion: a deeply nested document must not exhaust the stack)."""
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:  # an alias is the node it names, walked once
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in keys:
                        return key.value, key.start_mark.line + 1
                    keys.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return None


def objects(data: Any, source: str = "<input>", index: int = 0) -> list[Document]:
    """The Kubernetes objects of one parsed document (``yaml.safe_load``'s, ``json.load``'s),
    Lists expanded; without the YAML's nodes, a field's line is the object's."""
    return _objects(data, None, source, index)


def _objects(data: Any, node: yaml.Node | None, source: str, index: int) -> list[Document]:
    if not isinstance(data, Mapping) or not isinstance(data.get("kind"), str):
        return []  # not a Kubernetes object: a values file, a workflow, an empty document
    if not isinstance(data.get("apiVersion"), str):
        return []
    items = data.get("items")
    if data["kind"].endswith("List") and isinstance(items, list):
        # kubectl's `kind: List` carries each item's kind; a typed list (DeploymentList, as the
        # API returns it) does not, and its items are of the list's kind.
        item_kind = data["kind"][: -len("List")]
        item_nodes = _value_node(node, "items") if node is not None else None
        out: list[Document] = []
        for position, given in enumerate(items):
            item = given
            if isinstance(given, Mapping) and item_kind and "kind" not in given:
                item = {"apiVersion": data["apiVersion"], "kind": item_kind, **given}
            item_node = (
                item_nodes.value[position]
                if isinstance(item_nodes, yaml.SequenceNode) and position < len(item_nodes.value)
                else node
            )
            out += _objects(item, item_node, source, index)
        return out
    return [Document(data, source, index, node.start_mark.line + 1 if node is not None else 1, node)]


def _value_node(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if k.value == key), None)
    return None

"""YAML loading that keeps line numbers and refuses duplicate keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.errors import DataError

try:  # the C loader is several times faster; fall back when libyaml is missing
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class Mapping(dict[str, Any]):
    """A YAML mapping that remembers the line it started on (1-based)."""

    line: int = 0


class _Loader(_BaseLoader):
    pass


def _once(loader: _Loader, node: yaml.Node) -> yaml.Node:
    """Refuse aliases (*name): only an alias reaches a node a second time, and a few lines
    of nested ones expand to millions of values (none of our files needs them)."""
    if node in loader.constructed_objects or node in loader.recursive_objects:
        raise yaml.MarkedYAMLError(problem="aliases are not supported: the &anchor here is "
                                   "used again by a *alias; write the value out",
                                   problem_mark=node.start_mark)
    return node


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Any:
    data = Mapping()
    data.line = node.start_mark.line + 1
    yield data
    for key_node, value_node in node.value:
        key = loader.construct_object(_once(loader, key_node), deep=True)
        try:
            duplicate = key in data
        except TypeError:  # a list or mapping as a key
            raise yaml.MarkedYAMLError(problem="a key must be text or a number",
                                       problem_mark=key_node.start_mark) from None
        if duplicate:
            raise yaml.MarkedYAMLError(
                problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
            )
        data[key] = loader.construct_object(_once(loader, value_node), deep=True)


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> list[Any]:
    return [loader.construct_object(_once(loader, item), deep=True) for item in node.value]


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: Path) -> Any:
    """Parse one YAML file; any problem becomes a DataError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except OSError as exc:  # the path is in the message already
        raise DataError(path, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise DataError(path, f"invalid YAML: {exc.problem or exc.context}", line=line) from None
    except yaml.YAMLError as exc:
        raise DataError(path, f"invalid YAML: {exc}") from None


def line_of(value: object) -> int | None:
    return value.line if isinstance(value, Mapping) else None

"""Typed parameters of the jobs the factory runs (train, export, bench): one pydantic model per job kind,
shared by the REST API's /v1/jobs, the CLI and the chat tools. Strict: true is not a number, "5" is not a
number, 32.5 is not a whole number; ranges are the fields' own; unknown names are refused with a suggestion;
the ConfigError names the field and what it should be."""

from __future__ import annotations

from types import UnionType
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from factory.errors import ConfigError
from factory.registry import suggest

_KINDS = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


class Params(BaseModel):
    """Base of every job's parameters: strict types, unknown names refused."""

    model_config = ConfigDict(strict=True, extra="forbid")
    what: ClassVar[str] = "Job parameter"  # how messages name one of them, e.g. "Export parameter"


def check(schema: type[Params], values: Any) -> dict[str, Any]:
    """The values given, validated against `schema` (defaults are not filled in); raises ConfigError naming the
    first wrong field, what was sent and what it should be."""
    if not isinstance(values, dict):
        raise ConfigError(f"{schema.what}s must be an object of names and values, not {type(values).__name__}.",
                          fix=f"Send e.g. {{{', '.join(repr(n) + ': ...' for n in _required(schema))}}}.")
    try:
        parsed = schema.model_validate(values)
    except ValidationError as exc:
        raise _error(schema, exc.errors()[0]) from None
    return {k: getattr(parsed, k) for k in values}


def _required(schema: type[Params]) -> list[str]:
    return [name for name, f in schema.model_fields.items() if f.is_required()]


def _error(schema: type[Params], err: dict) -> ConfigError:
    name = str(err["loc"][0]) if err["loc"] else ""
    fields = schema.model_fields
    if err["type"] == "extra_forbidden":
        return ConfigError(f"Unknown {schema.what.lower()} {name!r}.{suggest(name, list(fields))}",
                           fix=f"Valid names: {', '.join(fields)}.")
    if err["type"] == "missing":
        return ConfigError(f"{schema.what} {name} is missing.", fix=f"Send {name} as {expected(fields[name])}.")
    optional = "" if fields[name].is_required() else " (or leave it out)"
    return ConfigError(f"{schema.what} {name}={err['input']!r} is not {expected(fields[name])}.",
                       fix=f"Send {name} as {expected(fields[name])}{optional}.")


def expected(field: FieldInfo) -> str:
    """What a field takes, in words: "a whole number from 1 to 100000", "a string", "true or false"."""
    annotation = field.annotation
    kinds = [t for t in (get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,))
             if t is not type(None)]
    if len(kinds) == 1 and get_origin(kinds[0]) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(kinds[0]))
    if len(kinds) != 1 or kinds[0] not in _KINDS:
        return "a value of type " + " or ".join(getattr(t, "__name__", str(t)) for t in kinds)
    words = _KINDS[kinds[0]]
    bounds = {type(m): getattr(m, {Ge: "ge", Gt: "gt", Le: "le", Lt: "lt"}[type(m)]) for m in field.metadata if isinstance(m, (Ge, Gt, Le, Lt))}
    low = f"from {bounds[Ge]}" if Ge in bounds else f"above {bounds[Gt]}" if Gt in bounds else ""
    high = f"below {bounds[Lt]}" if Lt in bounds else "" if Le not in bounds else \
        f"to {bounds[Le]}" if Ge in bounds else f"at most {bounds[Le]}"
    if low == f"from {bounds.get(Ge)}" and not high:
        low = f"of at least {bounds[Ge]}"
    return " ".join(p for p in (words, low, "and" if low and high and not high.startswith("to") else "", high) if p)

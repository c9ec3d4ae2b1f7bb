"""Typed payloads: pydantic v2 behind a small seam, imported only when a type is declared.

A route or push topic that declares a type gets a `Schema`: one `TypeAdapter`, built once at
registration. Nothing at this module's top level imports pydantic, so a router without typed
routes never loads it (the suite checks this in a fresh interpreter). This is the boundary
where pydantic's errors are translated: `ValidationError` becomes `Invalid`, whose `errors`
are already in the wire shape `{"loc", "msg", "type"}` and bounded in count and size.

Validation is bounded whatever the payload. pydantic collects every error it finds, and a
union tried on every item multiplies them: 1 MiB of `null`s against `list[int | str |
list[int] | dict[str, int]]` built 838,860 errors (1.3 s) and converting them to dicts took
5 s more, while every other client of the worker waited. So a payload is first validated
with `fail_fast` set on every list, tuple, set and dict of the type: a valid payload costs the
same, an invalid one stops at the first bad item of each. Only a payload of at most
`FULL_COUNT_NODES` values (counted with a walk that stops there) is validated again to count
all its errors; pydantic counts them without converting any.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydantic import TypeAdapter, ValidationError
    from pydantic_core import SchemaValidator

__all__ = [
    "FULL_COUNT_NODES",
    "MAX_LOC_ITEMS",
    "MAX_LOC_TEXT",
    "MAX_MSG_TEXT",
    "PLACEHOLDER",
    "Invalid",
    "Schema",
    "TopicType",
    "annotated_payload_type",
    "declares_type",
    "json_schemas",
    "route_schemas",
    "topic_regex",
]


#: bounds of one reported error, so a 400 stays small whatever the payload held
MAX_MSG_TEXT = 200
#: a payload of at most this many values (items, keys, scalars) gets its errors counted in
#: full; a larger one reports those found before validation stopped
FULL_COUNT_NODES = 4096
MAX_LOC_ITEMS = 16
MAX_LOC_TEXT = 64

Mode = Literal["validation", "serialization"]

#: a `{name}` in a push topic pattern: one or more characters of the topic
PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


class Invalid(Exception):
    """A value that does not fit its declared type.

    Attributes:
        errors: at most the requested number of errors, each `{"loc", "msg", "type"}`.
        count: how many errors pydantic found in all.
        complete: False when validation stopped at the first bad item of each list and
            object (a payload over `FULL_COUNT_NODES` values): `count` is then a lower bound.
    """

    def __init__(
        self, errors: list[dict[str, Any]], count: int, summary: str, complete: bool = True
    ) -> None:
        super().__init__(summary)
        self.errors = errors
        self.count = count
        self.complete = complete


def declares_type(tp: Any) -> bool:
    """True unless `tp` says nothing: absent, `Any` or `object` keep a route untyped."""
    return (
        tp is not None and tp is not Any and tp is not object and tp is not inspect.Parameter.empty
    )


@dataclass(frozen=True, slots=True, eq=False)
class Schema:
    """One declared type and the `TypeAdapter` that validates and serialises it."""

    type: Any
    adapter: TypeAdapter[Any]
    #: errors kept in an `Invalid` (pydantic may find thousands in a long list)
    max_errors: int
    #: the same type with `fail_fast` on every container: what requests are validated with
    first: SchemaValidator

    @classmethod
    def build(cls, tp: Any, max_errors: int, what: str) -> Schema:
        """Build the adapter for `tp` once.

        Raises:
            ImportError: pydantic v2 is not installed.
            TypeError: pydantic cannot make an adapter (or a JSON Schema) for `tp`; `what`
                names the route or topic in the message.
        """
        try:
            from pydantic import PydanticSchemaGenerationError, TypeAdapter
        except ImportError as exc:
            from ._extras import install_command

            raise ImportError(
                f"{what} declares the type {tp!r}, but typed routes need pydantic v2; "
                f"install the extra: {install_command('schema')}"
            ) from exc
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(tp)
        except PydanticSchemaGenerationError as exc:
            raise TypeError(f"{what}: pydantic cannot validate the type {tp!r}: {exc}") from None
        return cls(tp, adapter, max_errors, _fail_fast(adapter))

    # Public API

    def validate(self, value: Any) -> Any:
        """Return `value` validated into the declared type (a model, a dataclass, a dict...).

        Raises:
            Invalid: the value does not fit.
        """
        from pydantic import ValidationError

        try:
            return self.first.validate_python(value)
        except ValidationError as exc:
            first = exc
        count, complete = first.error_count(), False
        if _at_most(value, FULL_COUNT_NODES):
            try:
                self.adapter.validate_python(value)
            except ValidationError as exc:
                count, complete = exc.error_count(), True
                if count <= _CONVERTED:  # few enough to list the first of all of them
                    first = exc
        raise _invalid(first, self.max_errors, count, complete)

    def serialise(self, value: Any) -> Any:
        """Return `value` checked against the declared type and dumped to JSON-ready data.

        A model becomes a dict, a dataclass a dict, a `datetime` a string: the usual pydantic
        JSON form. Extra keys of a TypedDict or model are dropped, as FastAPI does with a
        response model.

        Raises:
            Invalid: the value does not fit.
        """
        from pydantic import ValidationError
        from pydantic_core import PydanticSerializationError

        adapter = self.adapter
        try:
            return adapter.dump_python(adapter.validate_python(value), mode="json")
        except ValidationError as exc:
            raise _invalid(exc, self.max_errors) from None
        except PydanticSerializationError as exc:
            error = {"loc": [], "msg": _clip(str(exc), MAX_MSG_TEXT), "type": "serialization"}
            raise Invalid([error], 1, str(exc)) from None


@dataclass(frozen=True, slots=True, eq=False)
class TopicType:
    """A declared push topic: a name or a `{placeholder}` pattern, and its payload type."""

    pattern: str
    schema: Schema | None
    description: str | None
    #: what topics the pattern covers; an exact name matches itself only
    regex: re.Pattern[str]

    @classmethod
    def build(
        cls, pattern: str, payload: Any, description: str | None, max_errors: int
    ) -> TopicType:
        """Declare `pattern`; `payload` None (or `Any`) documents the topic without a type.

        Raises:
            ValueError: `pattern` is not a non-empty string.
            ImportError, TypeError: as `Schema.build`.
        """
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"push topic must be a non-empty string, got {pattern!r}")
        what = f"push topic {pattern!r}"
        schema = Schema.build(payload, max_errors, what) if declares_type(payload) else None
        return cls(pattern, schema, description, topic_regex(pattern))


def topic_regex(pattern: str) -> re.Pattern[str]:
    """Return the regex a topic matches: each `{name}` stands for one or more characters."""
    return re.compile(".+".join(re.escape(part) for part in PLACEHOLDER.split(pattern)))


def route_schemas(
    name: str, handler: Callable[..., Any], options: Mapping[str, Any], max_errors: int
) -> tuple[Schema | None, Schema | None]:
    """Return the payload and response schemas a route declares (None where it declares none).

    The `payload` option wins over the annotation of the handler's payload parameter.

    Raises:
        ImportError: a type is declared and pydantic v2 is not installed.
        TypeError: a declared type cannot be validated, or an annotation cannot be resolved.
    """
    what = f"route {name!r}"
    payload = options.get("payload")
    if not declares_type(payload):
        payload = annotated_payload_type(handler, what)
    response = options.get("response")
    return (
        Schema.build(payload, max_errors, what) if declares_type(payload) else None,
        Schema.build(response, max_errors, f"{what} response") if declares_type(response) else None,
    )


def annotated_payload_type(handler: Callable[..., Any], what: str) -> Any:
    """Return the annotation of the handler's payload parameter, or None.

    The payload parameter is the third positional one of `handler(ws, headers, payload)`.
    A string annotation (`from __future__ import annotations`) is evaluated in the handler's
    module, the way `typing.get_type_hints` does, but for this one parameter only: an
    annotation of `ws` that only exists for type checkers must not break registration.

    Raises:
        TypeError: the annotation is a string that cannot be resolved.
    """
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # some builtins and C callables have none
        return None
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) < 3:
        return None
    param = positional[2]
    annotation = param.annotation
    if isinstance(annotation, str):
        annotation = _resolve(handler, param.name, annotation, what)
    return annotation if declares_type(annotation) else None


def json_schemas(
    items: Iterable[tuple[str, Mode, Schema]], ref_template: str
) -> tuple[dict[tuple[str, Mode], dict[str, Any]], dict[str, Any]]:
    """Return the JSON Schema of each item, and the definitions they share.

    One generation for every type, so two routes using the same model refer to one
    definition, and two different models with the same name get distinct names.

    Args:
        items: `(key, mode, schema)`; `mode` is `"validation"` for what clients send and
            `"serialization"` for what the router sends.
        ref_template: where the definitions will live, e.g. `"#/components/schemas/{model}"`.
    """
    inputs = [(key, mode, schema.adapter) for key, mode, schema in items]
    if not inputs:  # an untyped router: no pydantic
        return {}, {}
    from pydantic import TypeAdapter

    by_key, definitions = TypeAdapter.json_schemas(inputs, ref_template=ref_template)
    return dict(by_key), dict(definitions.get("$defs", {}))


# Private functions


def _resolve(handler: Callable[..., Any], name: str, annotation: str, what: str) -> Any:
    fn: Any = handler
    while hasattr(fn, "func"):  # functools.partial
        fn = fn.func
    fn = inspect.unwrap(fn)
    namespace = getattr(fn, "__globals__", None)
    if namespace is None:
        namespace = getattr(getattr(type(fn), "__call__", None), "__globals__", {})  # noqa: B004
    try:
        return eval(annotation, dict(namespace))  # the same evaluation get_type_hints does
    except Exception as exc:
        raise TypeError(
            f"{what}: cannot resolve the annotation {annotation!r} of the handler's "
            f"{name!r} parameter ({exc.__class__.__name__}: {exc}); define the type at module "
            "level, or give it as options={'payload': ...}"
        ) from None


#: the most errors converted to dicts to pick the first ones (about 6 us each, so 12 ms)
_CONVERTED = 2048
#: the core schema types that take `fail_fast`
_CONTAINERS = frozenset({"list", "tuple", "set", "frozenset", "dict"})


def _fail_fast(adapter: TypeAdapter[Any]) -> SchemaValidator:
    """A validator of the adapter's type that stops each container at its first bad item;
    the adapter's own validator when the schema cannot be rebuilt so."""
    from pydantic_core import SchemaValidator

    def mark(node: Any) -> Any:
        if type(node) is dict:
            copy = {key: mark(value) for key, value in node.items()}
            if copy.get("type") in _CONTAINERS:
                copy["fail_fast"] = True
            return copy
        if type(node) is list:
            return [mark(item) for item in node]
        if type(node) is tuple:
            return tuple(mark(item) for item in node)
        return node

    try:
        return SchemaValidator(mark(adapter.core_schema))
    except Exception:  # a schema this rewrite does not know: validate as pydantic would
        return adapter.validator  # type: ignore[return-value]


def _at_most(value: Any, budget: int) -> bool:
    """True when `value` holds at most `budget` values in all; stops counting past it."""
    stack = [value]
    while stack:
        budget -= 1
        if budget < 0:
            return False
        item = stack.pop()
        if type(item) is dict:
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return True


def _invalid(
    exc: ValidationError, limit: int, count: int | None = None, complete: bool = True
) -> Invalid:
    found = exc.errors(include_url=False, include_context=False, include_input=False)
    errors = [
        {
            "loc": [_loc_item(item) for item in error["loc"][:MAX_LOC_ITEMS]],
            "msg": _clip(error["msg"], MAX_MSG_TEXT),
            "type": error["type"],
        }
        for error in found[:limit]
    ]
    if count is None:
        count = exc.error_count()
    return Invalid(errors, count, _summary(errors, count, complete), complete)


def _loc_item(item: Any) -> str | int:
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    return _clip(str(item), MAX_LOC_TEXT)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _summary(errors: Sequence[dict[str, Any]], count: int, complete: bool = True) -> str:
    shown = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in errors[:3]
    )
    return f"{count}{'' if complete else ' or more'} validation error(s): {shown}"

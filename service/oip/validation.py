"""A pydantic validation error of an inference request, told in the client's terms.

pydantic names what it checked, not what the client sent: a value of the open `parameters`
objects (a string, number or boolean) failed as
`parameters.x.function-after[unicode_only(), str]: Input should be a valid string` (one
error per member of the union, each located at the member's validator), and a body that is
not an object as `: Input should be a valid dictionary or instance of InferRequest`. Here a
location keeps only the steps that exist in the body, a union's failures become one "must
be one of", and a type is named as JSON names it.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic_core import ErrorDetails

from service.errors import quoted

#: Type errors, by the JSON type the value should have been; any other error refused a value
#: of the right type (a string that is not valid Unicode).
JSON_TYPES = {
    "string_type": "string",
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "list_type": "array",
    "dict_type": "JSON object",
    "model_type": "JSON object",
    "model_attributes_type": "JSON object",
}
#: A key shown as it is in a location; any other is quoted (it may be long, or unprintable).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")
#: pydantic's location step for a dict's key (its value's location step is the key itself).
_KEY_STEP = "[key]"


def client_message(errors: list[ErrorDetails], doc: Any) -> str:
    """One line for the first error of `errors` (from validating `doc`): where, and what is wrong."""
    first = errors[0]
    where = _steps(first, doc)
    # A union's members fail together, each at the same place in the body.
    same_place = [e for e in errors if _steps(e, doc) == where]
    refused = next((e for e in same_place if e["type"] not in JSON_TYPES), None)
    what = _message(refused) if refused is not None else _must_be([JSON_TYPES[e["type"]] for e in same_place])
    if _KEY_STEP in first["loc"]:
        what = f"a key {what}"
    return f"{_location(where)}: {what}" if where else f"the request body {what}"


def _steps(error: ErrorDetails, doc: Any) -> list[str | int]:
    """The error's location as steps into the body, without pydantic's validator tags."""
    loc = list(error["loc"])
    if _KEY_STEP in loc:  # the key as pydantic shows it (a lone surrogate mangled): the dict is the place
        loc = loc[: loc.index(_KEY_STEP) - 1]
    node, steps = doc, []
    for i, step in enumerate(loc):
        if error["type"] == "missing" and i == len(loc) - 1:  # the absent field's name
            steps.append(step)
        elif _holds(node, step):
            steps.append(step)
            node = node[step]
        # Anything else is not in the body: a union member's tag such as `int` or
        # `function-after[unicode_only(), str]`.
    return steps


def _holds(node: Any, step: str | int) -> bool:
    """Whether `step` is a key of the JSON object `node`, or an index of the array `node`."""
    if isinstance(node, dict):
        return isinstance(step, str) and step in node
    return isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)


def _location(steps: list[str | int]) -> str:
    shown = ""
    for step in steps:
        if isinstance(step, int) or _PLAIN_KEY.fullmatch(step):
            shown += f".{step}"
        else:
            shown += f"[{quoted(step)}]"
    return shown.removeprefix(".")


def _must_be(types: list[str]) -> str:
    """"must be a string, number or boolean": each JSON type once; an integer is a number."""
    unique = list(dict.fromkeys(types))
    if "number" in unique and "integer" in unique:
        unique.remove("integer")
    names = unique[0] if len(unique) == 1 else f"{', '.join(unique[:-1])} or {unique[-1]}"
    article = "an" if names[0] in "aeiouAEIOU" else "a"
    return f"must be {article} {names}"


def _message(error: ErrorDetails) -> str:
    # "Value error, " is pydantic's prefix for a validator's ValueError: the rest is ours.
    return str(error["msg"]).removeprefix("Value error, ")

"""The shopper context as the config declares it: one schema property and one example value per field.

The ``Context`` component has one property per field under ``context:`` in the
config, with its type, its allowed values or range, its default and whether
it is required (:func:`context_property`); the request examples fill each
field with a value it accepts (:func:`example_value`).
"""

from __future__ import annotations

from typing import Any

from bandit.config import DAYS, ContextField
from service.http.openapi.blocks import num


def context_property(spec: ContextField) -> dict[str, Any]:
    """The JSON Schema of the context field ``spec``: its type, allowed values or range, default and null."""
    kind = spec.kind
    prop: dict[str, Any]
    if kind == "category":
        prop = {"type": "string", "enum": list(spec.values)}
    elif kind == "bool":
        prop = {"type": "boolean"}
    elif kind == "day_of_week":
        full = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        prop = {"type": "string", "enum": [*DAYS, *full], "description": "Day of the week; case-insensitive."}
    elif kind == "hour":
        prop = {"type": "integer", "minimum": 0, "maximum": 23, "description": "Hour of the day, 0-23."}
    else:  # number, integer
        prop = {"type": "integer" if kind == "integer" else "number"}
        if spec.min is not None:
            prop["minimum"] = num(spec.min)
        if spec.max is not None:
            prop["maximum"] = num(spec.max)
    notes = [f"Config type `{kind}`."]
    if spec.required:
        notes.append("Required.")
    elif spec.default == "now":
        notes.append("Defaults to the server's clock (UTC) when left out.")
    elif spec.default is not None:
        prop["default"] = spec.default
        notes.append(f"Defaults to `{spec.default!r}` when left out.")
    if not spec.required:
        # normalise() treats null as absent; the schema says so rather than refusing what the service accepts.
        notes.append("`null` is the same as leaving it out.")
        if "enum" in prop:
            prop["enum"] = [*prop["enum"], None]
        prop["type"] = [prop["type"], "null"]
    prop["description"] = " ".join([prop.get("description", ""), *notes]).strip()
    return prop


def example_value(spec: ContextField) -> Any:
    """A valid value of the context field ``spec``, for the request examples."""
    if spec.kind == "category":
        return spec.values[0]
    if spec.kind == "bool":
        return True
    if spec.kind == "hour":
        return 21
    if spec.kind == "day_of_week":
        return "sat"
    value = 30.0
    if spec.min is not None:
        value = max(value, spec.min)
    if spec.max is not None:
        value = min(value, spec.max)
    return int(value) if spec.kind == "integer" else value

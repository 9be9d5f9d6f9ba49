"""The building blocks every part of the document is made of.

A reference to a component schema (:func:`ref`), a JSON body or response with
its examples (:func:`json_body`), a GET operation (:func:`get_operation`) and
a config number written as JSON writes it (:func:`num`): small helpers with no
knowledge of the store, shared by the modules that build the schemas and the
paths.
"""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, str]:
    """A ``$ref`` to the component schema ``name``.

    >>> ref("SlotName")
    {'$ref': '#/components/schemas/SlotName'}
    """
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any], description: str, examples: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response (or body) of ``application/json`` content with ``schema`` and named ``examples``."""
    content: dict[str, Any] = {"schema": schema}
    if examples:
        content["examples"] = {name: {"value": value} for name, value in examples.items()}
    return {"description": description, "content": {"application/json": content}}


def get_operation(operation_id: str, summary: str, ok: dict[str, Any], tag: str, **more: Any) -> dict[str, Any]:
    """A path item with one GET operation answering ``ok`` with 200, and the responses ``more`` by status."""
    return {"get": {"operationId": operation_id, "tags": [tag], "summary": summary, "responses": {"200": ok, **more}}}


def num(x: float) -> int | float:
    """``x`` as an int when it is whole, so the document says ``1`` rather than ``1.0``.

    >>> num(1.0), num(0.5)
    (1, 0.5)
    """
    return int(x) if float(x).is_integer() else x

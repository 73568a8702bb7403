"""JSON Schemas (draft 2020-12) of every file ``insights`` writes, for other tools to validate and read.

Contract: :func:`json_schema` returns one complete JSON Schema per file; ``insights schema NAME`` prints it.

====================  =====================================================================================
name                  describes
====================  =====================================================================================
``insight``           one line of ``OUT.jsonl`` (one of four shapes, chosen by ``kind``)
``ledger``            one line of ``OUT.documents.jsonl`` (a finished document)
``errors``            one line of ``OUT.errors.jsonl`` (a document that failed)
``export-TABLE``      one row of a table of ``insights export`` (see :data:`insights.export.TABLES`)
====================  =====================================================================================

The line schemas come from the pydantic records in :mod:`insights.schema` (``InsightRecord`` with each
kind's fields, ``LedgerRecord``, ``ErrorRecord``); every property carries a description, and every
property is listed as required because the writer always writes it (null where the type allows).
Unknown properties are allowed (``additionalProperties: true``): fields may be added to the files,
never renamed or removed. The export schemas are made from the table definitions.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, Field, TypeAdapter, create_model

from .schema import RECORD_TYPES, ErrorRecord, InsightRecord, LedgerRecord
from .tables import TABLES, table_json_schema

DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: Every schema name, with what it describes.
SCHEMAS: dict[str, str] = {
    "insight": "one line of OUT.jsonl: an insight with its evidence and its document's metadata",
    "ledger": "one line of OUT.documents.jsonl: a finished document, its counts, rejected insights, provenance",
    "errors": "one line of OUT.errors.jsonl: a document that failed in the latest run",
    **{f"export-{name}": f"one row of the {name} table of insights export" for name in TABLES},
}


def insight_line_models() -> list[type[BaseModel]]:
    """One model per kind for a line of ``OUT.jsonl``: :class:`InsightRecord` plus the kind's own fields."""
    models: list[type[BaseModel]] = []
    for kind, record in RECORD_TYPES.items():
        own = {n: (f.annotation, f) for n, f in record.model_fields.items() if n not in InsightRecord.model_fields}
        kind_field = record.model_fields["kind"]
        own["kind"] = (kind_field.annotation, Field(description=f"Always {kind!r} for this shape of line."))
        models.append(
            create_model(f"{record.__name__}Line", __base__=InsightRecord, __doc__=record.__doc__, **own)  # type: ignore[call-overload]
        )
    return models


def _all_required(node: Any) -> None:
    """Mark every property of every object schema required: the writer always writes them."""
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            node["required"] = list(node["properties"])
        for value in node.values():
            _all_required(value)
    elif isinstance(node, list):
        for value in node:
            _all_required(value)


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one output file (see the module docstring for the names).

    Args:
        name: ``insight``, ``ledger``, ``errors`` or ``export-TABLE``.

    Returns:
        A JSON Schema (draft 2020-12) as a dict.

    Raises:
        KeyError: an unknown name.
    """
    if name not in SCHEMAS:
        raise KeyError(f"unknown schema {name!r}; choose one of {', '.join(SCHEMAS)}")
    if name.startswith("export-"):
        return table_json_schema(name[len("export-") :])
    if name == "insight":
        union: Any = Annotated[Union[tuple(insight_line_models())], Field(discriminator="kind")]
        body = TypeAdapter(union).json_schema()
    else:
        body = (LedgerRecord if name == "ledger" else ErrorRecord).model_json_schema()
    _all_required(body)
    return {"$schema": DIALECT, **body, "title": f"insights {name} line", "description": SCHEMAS[name] + "."}

"""Upcasters: old event payloads read as the current shape, never rewritten.

An event payload carries `schema_version` (1 when absent). The app that owns an
event type registers one step per old version; reading applies the steps in turn
until no step matches, so every reader (aggregates, projections) sees one shape.
"""

from collections.abc import Callable
from typing import Any

Step = Callable[[dict[str, Any]], dict[str, Any]]


class Upcasters:
    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Step] = {}

    def register(self, event_type: str, from_schema: int, step: Step) -> None:
        """`step` turns an `event_type` payload of `from_schema` into the next schema's."""
        key = (event_type, from_schema)
        if key in self._steps:
            raise ValueError(f"an upcaster for {event_type} schema {from_schema} is already registered")
        self._steps[key] = step

    def upcast(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(data, dict):
            return data  # not a payload any step knows; its reader decides what to make of it
        schema = data.get("schema_version", 1)
        while (step := self._steps.get((event_type, schema))) is not None:
            data = step(data)
            next_schema = data.get("schema_version", schema)
            if next_schema <= schema:
                raise ValueError(f"the upcaster for {event_type} schema {schema} did not raise the schema version")
            schema = next_schema
        return data


upcasters = Upcasters()

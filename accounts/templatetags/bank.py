"""Template filters for money and events. Output is escaped like any other text."""

import json
from decimal import Decimal

from django import template

from accounts.money import format_money
from eventstore.upcasting import upcasters

register = template.Library()


@register.filter
def money(minor, currency):
    if minor is None or minor == "":
        return ""
    if isinstance(minor, bool) or not isinstance(minor, (int, Decimal)):
        return str(minor)  # a malformed stored event: show what is there, never fail the page
    return format_money(int(minor), currency)


@register.filter
def event_amount(event):
    """The amount (minor units) an event moved, if it moved money, read in the current schema."""
    data = upcasters.upcast(event.event_type, event.event_data)
    return data.get("amount", data.get("initial_balance"))


@register.filter
def why(event):
    """The reason, source or reference a member of staff gave."""
    metadata = event.metadata or {}
    data = event.event_data if isinstance(event.event_data, dict) else {}
    for key in ("reason", "source", "reference"):
        if metadata.get(key):
            return metadata[key]
        if data.get(key):
            return data[key]
    return ""


@register.filter
def actor(event):
    return (event.metadata or {}).get("actor", "")


@register.filter
def pretty_json(value):
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@register.filter
def get(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None

"""Template filters for money and events. Output is escaped like any other text.

Events are read through their `data` (the payload upcast to its current schema)
and the domain's helpers, as every other reader of the log reads them.
"""

import json
import uuid
from decimal import Decimal

from django import template
from django.urls import reverse

from accounts import domain
from accounts.approvals import COMMAND_NAMES, EXPIRED, PENDING, REQUEST_TYPE
from accounts.approvals import LABELS as REQUEST_LABELS
from accounts.money import format_money

register = template.Library()


@register.filter
def money(minor, currency):
    if minor is None or minor == "":
        return ""
    if isinstance(minor, bool) or not isinstance(minor, (int, Decimal)):
        return str(minor)
    return format_money(int(minor), currency)


@register.filter
def number(count):
    """A count as staff read it: 1,000,000."""
    return f"{count:,}" if isinstance(count, int) and not isinstance(count, bool) else count


@register.filter
def event_amount(event):
    """The amount (minor units) an event moved, if it moved money; None for a payload that holds no valid one."""
    try:
        return domain.amount(event.event_type, event.data)
    except (KeyError, TypeError, ValueError):  # an unreadable event: the page's integrity warning says so
        return None


@register.filter
def signed_money(event, currency):
    """The money an event moved, signed as it moved the balance: "+12.50 EUR", "−12.50 EUR" (a real
    minus sign, so a withdrawal reads as one without its colour); "" for an event that moves none."""
    try:
        effect = domain.money_effect(event.event_type, event.data)
    except (KeyError, TypeError, ValueError):  # an unreadable event: the page's integrity warning says so
        return ""
    if not effect:
        return ""
    return ("+" if effect > 0 else "\u2212") + format_money(abs(effect), currency)


_TOWARDS = {"TransferSent": "to", "TransferReceived": "from"}


@register.filter
def event_title(event):
    """The event as staff name it: "Transfer received from" (the page adds the counterparty's name)."""
    title = REQUEST_LABELS.get(event.event_type) or domain.label(event.event_type)
    return f"{title} {_TOWARDS[event.event_type]}" if event.event_type in _TOWARDS else title


@register.filter
def direction(event):
    """ "credit", "debit", "open" or "status": how the event is marked."""
    return domain.direction(event.event_type)


@register.filter
def label(event):
    return domain.label(event.event_type)


@register.filter
def counterparty(event):
    """The other account of a transfer, or None."""
    return domain.counterparty(event.event_type, event.data)


@register.filter
def why(event):
    """The reason, source or reference a member of staff gave."""
    return domain.stated_reason(event.data, event.metadata)


@register.filter
def actor(event):
    return (event.metadata or {}).get("actor", "")


@register.filter
def pretty_json(value):
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@register.filter
def get(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def shown_state(row, now):
    """An approval request's state as staff see it: pending past its time reads as expired."""
    if row.state == PENDING and row.expires_at <= now:
        return EXPIRED
    return row.state


@register.filter
def command_name(command):
    """ "withdraw" -> "Withdrawal": a command that waits for approval, as staff name it."""
    return COMMAND_NAMES.get(command, command)


@register.inclusion_tag("accounts/_aggregate_cell.html")
def aggregate_cell(event, accounts):
    """The account an event belongs to, by owner and linked; or the approval request it belongs to."""
    request = event.aggregate_type == REQUEST_TYPE
    return {"event": event, "account": accounts.get(event.aggregate_id), "request": request}


@register.filter
def approval_url(event):
    """The page of the approval request an event carried out, or "" (metadata is not trusted to be a UUID)."""
    request_id = (event.metadata or {}).get("approval_request_id")
    try:
        return reverse("accounts:approval", args=[uuid.UUID(str(request_id))]) if request_id else ""
    except ValueError:
        return ""

"""The approvals queue and a request's page: a second person approves or rejects, the maker cancels.

The rules (who may approve, what a request may become) are the services' and the
domain's; these views only check the permission and the form, and say what happened.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST

from accounts import selectors, services
from accounts.approvals import APPROVED, COMMAND_NAMES, FAILED, PENDING, UnreadableRequest
from accounts.command_pages import linked, refusal
from accounts.domain import DomainError
from accounts.forms import ApprovalFilterForm, CommandForm, DecisionForm, RequestReasonForm
from accounts.views import staff_permission

APPROVE = "accounts.approve_request"
# What each button does, who may press it, and the form it sends.
ACTIONS = {
    "approve": ("Approve", APPROVE, DecisionForm),
    "reject": ("Reject", APPROVE, RequestReasonForm),
    "cancel": ("Cancel the request", "accounts.view_approval", RequestReasonForm),
}


@require_GET
@staff_permission("accounts.view_approval")
def approval_list(request):
    form = ApprovalFilterForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {}
    filters = selectors.ApprovalFilters(state=data.get("state") or "", account=data.get("account"),
                                        maker=data.get("maker") or "", command=data.get("command") or "")  # fmt: skip
    now = timezone.now()
    rows = selectors.approvals(filters, now=now, after=data.get("after")) if form.is_valid() else None
    query = request.GET.copy()
    query.pop("after", None)
    return render(request, "accounts/approval_list.html", {
        "form": form, "page": rows, "paged": bool(data.get("after")), "query": query.urlencode(), "now": now,
        "accounts": selectors.accounts_by_id(
            [r.account_id for r in rows.items] + [r.recipient_id for r in rows.items if r.recipient_id]
        ) if rows else {},
        "makers": selectors.makers(),
    })  # fmt: skip


@require_GET
@staff_permission("accounts.view_approval")
def approval_detail(request, request_id):
    try:
        approval = services.get_request(request_id)
    except UnreadableRequest as problem:  # a row the application did not sign: shown, never acted on
        return render(request, "accounts/approval_held.html", {"problem": problem})
    if approval is None:
        raise Http404("No such approval request.")
    now, me = timezone.now(), request.user.get_username()
    state = approval.state_at(now)
    effect, would_fail = [], None
    if state == PENDING:
        try:
            effect = services.what_approval_would_do(approval)
        except DomainError as error:
            would_fail = linked(error.parts)
    checker = request.user.has_perm(APPROVE) and me != approval.maker
    forms: dict[str, CommandForm] = {}
    if state == PENDING and checker:
        forms["approve"] = DecisionForm(initial=_key(), prefix="approve")
        forms["reject"] = RequestReasonForm(initial=_key(), prefix="reject")
    if state == PENDING and me == approval.maker:
        forms["cancel"] = RequestReasonForm(initial=_key(), prefix="cancel")
    accounts = {account_id: services.get_account(account_id) for account_id in approval.account_ids}
    return render(request, "accounts/approval_detail.html", {
        "approval": approval, "state": state, "effect": effect, "would_fail": would_fail, "forms": forms,
        "actions": ACTIONS, "accounts": accounts, "account": accounts[approval.account_ids[0]],
        "recipient": accounts.get(approval.recipient_id) if approval.recipient_id else None,
        "own": me == approval.maker, "command_name": COMMAND_NAMES[approval.command],
    })  # fmt: skip


def _key() -> dict[str, str]:
    return {"idempotency_key": str(uuid.uuid4())}


@require_POST
@staff_permission("accounts.view_approval")
def approval_command(request, request_id, action):
    if action not in ACTIONS:
        raise Http404("No such action.")
    label, permission, form_class = ACTIONS[action]
    if not request.user.has_perm(permission):
        raise PermissionDenied
    here = reverse("accounts:approval", args=[request_id])
    form = form_class(request.POST, prefix=action)
    if not form.is_valid():
        messages.error(request, f"{label} refused: give a reason. Nothing was done.")
        return redirect(here)
    key = form.cleaned_data["idempotency_key"]
    try:
        if action == "approve":
            done = services.approve(request_id=request_id, idempotency_key=key)
        elif action == "reject":
            done = services.reject(request_id=request_id, reason=form.cleaned_data["reason"], idempotency_key=key)
        else:
            done = services.cancel(request_id=request_id, reason=form.cleaned_data["reason"], idempotency_key=key)
    except DomainError as error:
        messages.error(request, linked(refusal(label, error)))
        return redirect(here)
    if done.state == APPROVED:
        messages.success(request, format_html("Approved: {} has run.", done.describe()))
    elif done.state == FAILED:
        messages.error(request, format_html("Approved, but it could not run: {} Nothing moved.", done.outcome))
    else:
        messages.success(request, format_html("The request is {}: nothing moved.", done.state))
    return redirect(here)

"""The read models in the admin: accounts (with freeze and unfreeze actions) and approval requests.

The actions ask for a reason on a confirmation page, then run the services one
account at a time and report each account's outcome: the admin never writes a
read-model row itself. An unfreeze waits for a second person like any other
(four eyes); requests are approved on the back-office's approvals page, never here.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse

from accounts import selectors, services
from accounts.approvals import ApprovalPending
from accounts.domain import CURRENCIES, MAX_TEXT_LENGTH, DomainError
from accounts.models import Account, Approval
from accounts.money import format_money
from eventstore.admin import ReadOnlyAdmin
from eventstore.context import metadata_context


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=MAX_TEXT_LENGTH, strip=True, widget=forms.TextInput(attrs={"size": 60}))


def _status_action(request, queryset, *, command, verb, done, permission, title):
    if not request.user.has_perm(permission):
        messages.error(request, f"Your role does not allow you to {verb} accounts. Nothing was done.")
        return None
    form = ReasonForm(request.POST if "confirm" in request.POST else None)
    if form.is_valid():
        reason = form.cleaned_data["reason"]
        with metadata_context(causation_id=f"admin:{verb}"):
            for account in queryset:
                try:
                    command(account_id=account.account_id, reason=reason)
                except ApprovalPending as pending:
                    messages.info(request, f"{account.owner} ({account.account_id}): {pending}")
                except DomainError as error:
                    messages.warning(request, f"{account.owner} ({account.account_id}): not {done} — {error}")
                else:
                    messages.success(request, f"{account.owner} ({account.account_id}): {done}.")
        return None
    return TemplateResponse(
        request,
        "admin/accounts/account/status_change.html",
        {
            **admin.site.each_context(request),
            "title": title,
            "verb": verb,
            "action": request.POST.get("action"),
            "accounts": queryset,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "opts": Account._meta,
        },
    )


@admin.action(description="Freeze the selected accounts…", permissions=["freeze"])
def freeze_accounts(modeladmin, request, queryset):
    return _status_action(
        request, queryset, command=services.freeze, verb="freeze", done="frozen",
        permission="accounts.freeze_account", title="Freeze accounts",
    )  # fmt: skip


@admin.action(description="Unfreeze the selected accounts…", permissions=["unfreeze"])
def unfreeze_accounts(modeladmin, request, queryset):
    return _status_action(
        request, queryset, command=services.unfreeze, verb="unfreeze", done="unfrozen",
        permission="accounts.unfreeze_account", title="Unfreeze accounts",
    )  # fmt: skip


class CurrencyFilter(admin.SimpleListFilter):
    """The bank's currencies, from the domain: Django's own filter would scan every row for them."""

    title = "currency"
    parameter_name = "currency"

    def lookups(self, request, model_admin):
        return [(code, code) for code in sorted(CURRENCIES)]

    def queryset(self, request, queryset):
        return queryset.filter(currency=self.value()) if self.value() else queryset


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["owner", "account_id", "currency", "formatted_balance", "status", "version", "last_activity_at"]
    list_filter = ["status", CurrencyFilter]
    search_fields = ["owner"]  # handled by get_search_results, as the back-office's search
    search_help_text = "Words of the owner's name (accents and case ignored, any order), or the start of an id."
    ordering = ["-opened_at"]
    actions = [freeze_accounts, unfreeze_accounts]
    readonly_fields = [f.name for f in Account._meta.fields]

    def get_search_results(self, request, queryset, search_term):
        """The back-office's search, on its indexes: never a LIKE over every account."""
        if not search_term.strip():
            return queryset, False
        return queryset.filter(account_id__in=selectors.matching(search_term).values("account_id")), False

    @admin.display(description="balance", ordering="balance")
    def formatted_balance(self, account):
        return format_money(account.balance, account.currency)

    def view_on_site(self, account):
        return reverse("accounts:detail", args=[account.account_id])

    # An action is offered only to a role that may run it (and the action checks again).
    def has_freeze_permission(self, request):
        return request.user.has_perm("accounts.freeze_account")

    def has_unfreeze_permission(self, request):
        return request.user.has_perm("accounts.unfreeze_account")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyAdmin):
    """Approval requests, read-only: nobody edits a request; a checker decides it on its page."""

    list_display = ["requested_at", "command", "account_id", "formatted_amount", "maker", "state", "checker"]
    list_filter = ["state", "command", CurrencyFilter]
    search_fields = ["=request_id", "=account_id", "maker", "checker"]
    ordering = ["-requested_at"]
    readonly_fields = [f.name for f in Approval._meta.fields]

    @admin.display(description="amount", ordering="amount")
    def formatted_amount(self, row):
        return "" if row.amount is None else format_money(row.amount, row.currency)

    def view_on_site(self, row):
        return reverse("accounts:approval", args=[row.request_id])

from django.urls import path

from accounts import approval_views, exports, views

app_name = "accounts"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("accounts/", views.account_list, name="list"),
    path("accounts/open/", views.open_account, name="open"),
    path("accounts/<uuid:account_id>/", views.account_detail, name="detail"),
    path("accounts/<uuid:account_id>/statement.csv", exports.statement_csv, name="statement_csv"),
    path("accounts/<uuid:account_id>/transactions.csv", exports.transactions_csv, name="transactions_csv"),
    path("accounts/<uuid:account_id>/<slug:command>/", views.account_command, name="command"),
    path("accounts/<uuid:account_id>/<slug:command>/review/", views.review, name="review"),
    path("approvals/", approval_views.approval_list, name="approvals"),
    path("approvals/<uuid:request_id>/", approval_views.approval_detail, name="approval"),
    path("approvals/<uuid:request_id>/<slug:action>/", approval_views.approval_command, name="approval_command"),
    path("audit/", views.audit_log, name="audit"),
    path("audit/export.csv", exports.audit_log_csv, name="audit_csv"),
]

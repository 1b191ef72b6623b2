from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("accounts/", views.account_list, name="list"),
    path("accounts/open/", views.open_account, name="open"),
    path("accounts/<uuid:account_id>/", views.account_detail, name="detail"),
    path("accounts/<uuid:account_id>/statement.csv", views.statement_csv, name="statement_csv"),
    path("accounts/<uuid:account_id>/<slug:command>/", views.account_command, name="command"),
    path("accounts/<uuid:account_id>/<slug:command>/review/", views.review, name="review"),
    path("audit/", views.audit_log, name="audit"),
    path("audit/export.csv", views.audit_log_csv, name="audit_csv"),
]

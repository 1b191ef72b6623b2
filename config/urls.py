from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts.forms import StaffLoginForm
from config.health import Health, Ready

admin.site.site_header = "Bank back-office administration"
admin.site.site_title = "Bank admin"

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=StaffLoginForm),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", Health.as_view(), name="healthz"),
    path("readyz", Ready.as_view(), name="readyz"),
    path("", include("accounts.urls")),
]

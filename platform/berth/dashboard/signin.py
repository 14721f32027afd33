"""The dashboard's login page: Django's LoginView, with the password checked under the brute-force guard."""

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpResponse

from berth.accounts import services as accounts_services
from berth.accounts.throttles import GuardUnavailable, Throttled
from berth.dashboard.common import client_ip


class ThrottledAuthenticationForm(AuthenticationForm):
    """AuthenticationForm whose check counts failures per account and address (berth.accounts.services.sign_in).

    `refused` is set when the password was not even looked at: (HTTP status, seconds to wait, what to say)."""

    refused: tuple[int, int, str] | None = None

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            try:
                self.user_cache = accounts_services.sign_in(
                    request=self.request,
                    username=username,
                    password=password,
                    remote_addr=client_ip(self.request),
                )
            except Throttled as exc:
                self.refused = (
                    429,
                    exc.retry_after,
                    f"{exc}. Until then even the right password is refused.",
                )
                raise forms.ValidationError(str(exc), code="throttled") from None
            except GuardUnavailable:
                self.refused = (503, 30, "signing in is unavailable right now; try again in a minute.")
                raise forms.ValidationError(self.refused[2], code="unavailable") from None
            if self.user_cache is None:
                raise self.get_invalid_login_error()
        return self.cleaned_data


class SignInView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True
    next_page = "dashboard:apps"

    def form_invalid(self, form) -> HttpResponse:
        response = super().form_invalid(form)
        if form.refused is not None:
            # the page says when to come back; the status and header say it to scripts and proxies
            response.status_code, retry_after, _ = form.refused
            response["Retry-After"] = str(retry_after)
        return response

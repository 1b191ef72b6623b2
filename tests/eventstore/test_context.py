"""The metadata context: filled per request, overridable, and carried by appends."""

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpResponse
from django.test import RequestFactory

from eventstore import context
from eventstore.context import EventMetadataMiddleware, metadata_context, system_actor


def through_middleware(user, **request_meta):
    captured = {}

    def view(request):
        captured.update(context.current())
        return HttpResponse("ok")

    request = RequestFactory().post("/", **request_meta)
    request.user = user
    response = EventMetadataMiddleware(view)(request)
    return captured, response


def test_middleware_records_the_logged_in_user_address_and_request():
    captured, response = through_middleware(User(pk=41, username="teller1"), REMOTE_ADDR="192.0.2.7")
    assert captured["actor"] == "teller1"
    assert captured["actor_id"] == 41
    assert captured["client_address"] == "192.0.2.7"
    assert captured["request_id"] == captured["correlation_id"] == response["X-Request-ID"]
    assert uuid.UUID(captured["request_id"])


def test_middleware_marks_an_anonymous_visitor_and_each_request_is_its_own_correlation():
    first, _ = through_middleware(AnonymousUser())
    second, _ = through_middleware(AnonymousUser())
    assert first["actor"] == "anonymous"
    assert "actor_id" not in first
    assert first["correlation_id"] != second["correlation_id"]


def test_context_is_gone_after_the_request():
    through_middleware(User(pk=41, username="teller1"))
    assert "actor" not in context.current()


def test_explicit_values_override_and_nesting_restores():
    with metadata_context(actor=system_actor("seed_demo"), correlation_id="outer"):
        with metadata_context(correlation_id="inner", causation_id="cause"):
            assert context.current() == {
                "actor": "system:seed_demo",
                "correlation_id": "inner",
                "causation_id": "cause",
            }
        assert context.current() == {"actor": "system:seed_demo", "correlation_id": "outer"}


def test_unknown_metadata_keys_are_refused():
    with pytest.raises(TypeError, match="unknown event metadata: colour"):
        with metadata_context(colour="red"):
            pass

"""The client IP behind proxies (accounts.services.network.client_ip): the one
rule REST throttles, axes and audit share."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import RequestFactory, override_settings

from accounts.services.network import client_ip, scope_client_ip


def _proxies(count: int):
    return override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": count})


def _request(**meta):
    return RequestFactory().get("/api/v1/me/", REMOTE_ADDR="10.0.0.5", **meta)


def test_forwarded_for_is_ignored_without_proxies():
    with _proxies(0):
        assert client_ip(_request(HTTP_X_FORWARDED_FOR="203.0.113.1")) == "10.0.0.5"


@pytest.mark.parametrize(
    ("count", "header", "expected"),
    [
        (1, "203.0.113.1", "203.0.113.1"),
        # The client may send any left part; only what our proxy appended counts.
        (1, "6.6.6.6, 203.0.113.1", "203.0.113.1"),
        (2, "6.6.6.6, 203.0.113.1, 10.1.1.1", "203.0.113.1"),
        (1, "2001:DB8::1", "2001:db8::1"),
    ],
)
def test_forwarded_for_is_read_as_the_nth_from_the_right(count, header, expected):
    with _proxies(count):
        assert client_ip(_request(HTTP_X_FORWARDED_FOR=header)) == expected


@pytest.mark.parametrize("header", [None, "", "not-an-ip", "10.1.1.1"])
def test_a_forwarded_for_shorter_than_the_proxy_chain_falls_back_to_the_peer(header):
    meta = {"HTTP_X_FORWARDED_FOR": header} if header is not None else {}
    with _proxies(2):
        assert client_ip(_request(**meta)) == "10.0.0.5"


def test_garbage_in_the_trusted_position_gives_no_address():
    with _proxies(1):
        assert client_ip(_request(HTTP_X_FORWARDED_FOR="not-an-ip")) is None


def test_websocket_scope_follows_the_same_rule():
    scope = {"client": ("10.0.0.5", 5000), "headers": [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.1")]}
    with _proxies(0):
        assert scope_client_ip(scope) == "10.0.0.5"
    with _proxies(1):
        assert scope_client_ip(scope) == "203.0.113.1"


def test_axes_uses_the_same_rule():
    from axes.helpers import get_client_ip_address

    with _proxies(1):
        assert get_client_ip_address(_request(HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.1")) == "203.0.113.1"
    with _proxies(0):
        assert get_client_ip_address(_request(HTTP_X_FORWARDED_FOR="203.0.113.1")) == "10.0.0.5"

"""Browsers' way onto the game socket: the session token offered as a subprotocol
(``crowdseg.ws_auth``), checked exactly like the ``X-Session-Token`` header."""

from __future__ import annotations

import asyncio

import pytest

from tests.inference.test_suggest_api import app_login


def handshake(protocols: list[str], headers=None) -> tuple[bool, object]:
    """(accepted, the subprotocol chosen or the close code) of one handshake through the ASGI stack."""
    from channels.testing import WebsocketCommunicator

    from crowdseg.asgi import application

    async def connect():
        communicator = WebsocketCommunicator(
            application,
            "/ws/v1/play",
            headers=[(b"origin", b"http://localhost"), (b"host", b"localhost"), *(headers or [])],
            subprotocols=protocols,
        )
        connected, detail = await communicator.connect()
        # Refused or not, end the application's instance: left running, its channel-layer read
        # (Redis, on the real stack) could outlive asyncio.run's cancellation and hang the test.
        await communicator.disconnect()
        return connected, detail

    return asyncio.run(connect())


@pytest.mark.django_db(transaction=True)
def test_a_browser_signs_in_with_its_token_as_a_subprotocol_and_gets_only_the_protocol_back(alice):
    token = app_login(alice)
    assert handshake(["crowdseg.v1", f"crowdseg.token.{token}"]) == (True, "crowdseg.v1")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("token", ["", "not-a-session", "x" * 200])
def test_an_invalid_token_in_the_subprotocol_is_refused(token):
    accepted, _ = handshake(["crowdseg.v1", f"crowdseg.token.{token}"])
    assert not accepted


@pytest.mark.django_db(transaction=True)
def test_two_tokens_in_the_subprotocols_are_refused_even_if_one_is_good(alice):
    token = app_login(alice)
    accepted, _ = handshake(["crowdseg.v1", f"crowdseg.token.{token}", "crowdseg.token.forged"])
    assert not accepted


@pytest.mark.django_db(transaction=True)
def test_a_token_after_logout_is_refused_in_the_subprotocol_too(alice):
    from rest_framework.test import APIClient

    token = app_login(alice)
    APIClient().delete("/_allauth/app/v1/auth/session", HTTP_X_SESSION_TOKEN=token)
    accepted, _ = handshake(["crowdseg.v1", f"crowdseg.token.{token}"])
    assert not accepted


@pytest.mark.django_db(transaction=True)
def test_without_a_token_anonymous_browsers_are_still_refused():
    assert handshake(["crowdseg.v1"]) == (False, 4401)

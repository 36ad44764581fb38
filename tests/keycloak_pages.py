"""A person at Keycloak's own pages, without a browser: approving (or denying) a device
login as ``runstream login`` asks, by reading each page's HTML form and submitting it.

Keycloak marks its cookies ``Secure``; browsers send those to http://127.0.0.1 (a loopback
origin counts as secure), Python's cookie jar does not, so this client keeps them sendable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx

from tests.keycloak import PASSWORD


@dataclass
class Form:
    """One HTML form: where it posts, its fields, and its submit buttons (name -> value)."""

    action: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, str] = field(default_factory=dict)
    ident: str = ""


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), ident=a.get("id", "")))
        elif self.forms and tag in ("input", "button") and a.get("name"):
            kind = a.get("type", "submit" if tag == "button" else "text")
            target = self.forms[-1].buttons if kind == "submit" else self.forms[-1].fields
            target[a["name"]] = a.get("value", "")


def forms(html: str) -> list[Form]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def _page_text(html: str) -> str:
    """The words of the page's body, without its scripts and tags."""
    body = html.split("<body", 1)[-1]
    body = re.sub(r"<script.*?</script>", " ", body, flags=re.DOTALL)
    return " ".join(re.sub(r"<[^>]*>", " ", body).split())[:1500]


def approve_device(verification_uri: str, user: str, *, accept: bool = True) -> str:
    """Open the verification address, sign in as ``user`` and answer the grant's consent
    page (Yes, or No with ``accept=False``); the final page's title text."""
    with httpx.Client(follow_redirects=True, timeout=30) as browser:

        def loopback_is_secure(_: httpx.Response) -> None:
            for cookie in browser.cookies.jar:
                cookie.secure = False

        browser.event_hooks["response"] = [loopback_is_secure]
        page = browser.get(verification_uri)
        for _ in range(4):  # sign in, consent: a page each, and a margin
            found = forms(page.text)
            login = next((f for f in found if "username" in f.fields), None)
            consent = next((f for f in found if "accept" in f.buttons), None)
            if login is not None:
                data = {**login.fields, "username": user, "password": PASSWORD}
                page = browser.post(page.url.join(login.action), data=data)
            elif consent is not None:
                button = "accept" if accept else "cancel"
                data = {**consent.fields, button: consent.buttons[button]}
                page = browser.post(page.url.join(consent.action), data=data)
            else:
                break
        assert page.status_code < 500, _page_text(page.text)
        return _page_text(page.text)

"""Open and click tracking, in process: which links are rewritten, the pixel, the template
switches, machine opens and the events' message ids."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from journeyman.domain.model import Workspace
from journeyman.domain.state import SendMessage
from journeyman.domain.tracking import PREFETCHERS, machine_open, rewrite, tracked_links
from journeyman.runtime.links import Links
from journeyman.runtime.tracking import (
    CLICK,
    Tracker,
    click_event,
    clicked_url,
    open_event,
)
from journeyman.workspace import load_texts

OWN = "https://go.example.com"
LINKS = Links(OWN, b"secret")
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

BODY = """<html><body>
<p>Hello <a href="https://shop.example/sale?a=1&amp;b=2">the sale</a>,
<a class="x" href='http://blog.example/post'>the blog</a>,
<a href=https://bare.example/x>bare</a>.</p>
<!-- <a href="https://commented.example/">not a link</a> -->
<a href="mailto:help@example.com">mail us</a> <a href="tel:+15551234">call</a>
<a href="#top">top</a> <a href="{{ unsubscribe_url }}">unsubscribe</a>
<a href="https://go.example.com/u/abc">unsubscribe (ours)</a>
<A HREF="HTTPS://UPPER.example/">upper</A>
<link href="https://fonts.example/css">
</body></html>"""


def test_only_http_links_of_a_elements_are_tracked_and_entities_are_decoded() -> None:
    assert tracked_links(BODY, OWN) == [
        "https://shop.example/sale?a=1&b=2",
        "http://blog.example/post",
        "https://bare.example/x",
        "HTTPS://UPPER.example/",
    ]


def test_rewriting_replaces_exactly_the_tracked_links_and_adds_the_pixel_before_body() -> None:
    out = rewrite(BODY, lambda i: f"{OWN}/c/t{i}?x=1&y=2", f"{OWN}/o/p", OWN)
    clicks = [f"{OWN}/c/t{i}?x=1&y=2" for i in range(4)]
    assert tracked_links(out, "") == [*clicks[:3], f"{OWN}/u/abc", clicks[3]]
    assert 'href="https://go.example.com/c/t0?x=1&amp;y=2"' in out
    for kept in ("mailto:help@example.com", "tel:+15551234", "#top", "{{ unsubscribe_url }}"):
        assert f'href="{kept}"' in out
    assert '<a href="https://commented.example/">' in out
    assert "shop.example" not in out.replace("commented", "")
    pixel = f'<img src="{OWN}/o/p" width="1" height="1"'
    assert out.index(pixel) < out.index("</body>")
    assert out.count("<img") == 1


def test_without_a_body_element_the_pixel_goes_at_the_end() -> None:
    out = rewrite('<p><a href="https://a.example">a</a></p>', lambda i: f"c{i}", "pix")
    assert out.startswith('<p><a href="c0">a</a></p><img src="pix"')


@pytest.mark.parametrize(
    "agent",
    [
        "Mozilla/5.0",
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.4266; Pro)",
    ],
)
def test_mail_proxies_are_machine_opens(agent: str) -> None:
    assert machine_open(agent)


def test_a_person_s_mail_client_is_not_a_machine_open() -> None:
    safari = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML)"
    assert not machine_open(safari)
    assert not machine_open("")
    assert all(fragment and why for fragment, why in PREFETCHERS)


def message(template: str = "promo", version: int = 1, html: str = BODY) -> SendMessage:
    return SendMessage(
        key="i1:send:3",
        instance_id="i1",
        journey="j",
        step="send",
        profile_id="p1",
        channel="email",
        template=template,
        to="ada@example.com",
        content={"subject": "Hi", "html": html, "text": "Hi https://shop.example/sale"},
        at=AT,
        version=version,
    )


TEMPLATES = """
kind: event
name: signed_up
identity: userId
schema: {type: object}
---
kind: template
name: promo
channel: email
subject: Hi
html: "<p>x</p>"
---
kind: template
name: quiet
channel: email
tracking: false
subject: Hi
html: "<p>x</p>"
---
kind: template
name: receipt
channel: email
transactional: true
subject: Hi
html: "<p>x</p>"
---
kind: template
name: counted_receipt
channel: email
transactional: true
tracking: true
subject: Hi
html: "<p>x</p>"
---
kind: journey
name: j
entry: {event: signed_up}
steps:
  - {id: send, send: promo}
  - {id: done, end: done}
"""


def workspace(text: str = TEMPLATES) -> Workspace:
    loaded = load_texts({"w.yaml": text})
    assert loaded.workspace is not None, loaded.problems
    return loaded.workspace


def tracker(current: Workspace) -> Tracker:
    return Tracker(lambda: LINKS, lambda name, version: None, lambda: current)


def test_tracked_email_gets_signed_click_links_and_the_pixel_and_nothing_else_changes() -> None:
    sent = tracker(workspace())(message())
    links = tracked_links(sent.content["html"], "")
    assert links[3] == f"{OWN}/u/abc"  # the deployment's own link is left as it is
    for index, link in enumerate([*links[:3], links[4]]):
        token = link.removeprefix(f"{OWN}/c/")
        assert LINKS.read(CLICK, token) == ("i1:send:3", str(index))
        assert "shop.example" not in token
    assert f"{OWN}/o/" in sent.content["html"]
    assert sent.content["text"] == message().content["text"]
    assert sent.content["subject"] == "Hi"


@pytest.mark.parametrize("template", ["quiet", "receipt", "gone"])
def test_untracked_transactional_and_unknown_templates_are_sent_untouched(template: str) -> None:
    original = message(template)
    assert tracker(workspace())(original) is original


def test_a_transactional_template_may_ask_for_tracking() -> None:
    assert tracker(workspace())(message("counted_receipt")) != message("counted_receipt")


def test_the_template_of_the_message_s_journey_version_decides() -> None:
    old = workspace()  # version 1: promo is tracked
    now = workspace(TEMPLATES.replace("name: promo\n", "name: promo\ntracking: false\n"))
    journey = old.journeys["j"]
    versions = {("j", 1): dataclasses.replace(journey, templates=old.templates)}
    step = Tracker(lambda: LINKS, lambda n, v: versions.get((n, v)), lambda: now)
    assert step(message(version=1)) != message(version=1)  # sent by version 1: tracked
    assert step(message(version=2)) == message(version=2)  # not kept: today's template


@pytest.mark.parametrize("value", ["yes", 1, "null", [True]])
@pytest.mark.parametrize("field", ["tracking", "transactional"])
def test_a_switch_that_is_not_a_boolean_is_an_error_naming_it(field: str, value: object) -> None:
    text = TEMPLATES.replace("name: promo\n", f"name: promo\n{field}: {value!r}\n")
    loaded = load_texts({"w.yaml": text})
    found = [str(p) for p in loaded.problems]
    assert any(f"'{field}' must be true or false" in p for p in found), found


def test_a_click_finds_the_link_it_names_and_nothing_else() -> None:
    stored = message()
    assert clicked_url(stored, "0", OWN) == "https://shop.example/sale?a=1&b=2"
    assert clicked_url(stored, "3", OWN) == "HTTPS://UPPER.example/"
    for index in ("4", "-1", "01x", "", "9" * 50, "١"):
        assert clicked_url(stored, index, OWN) is None


def test_repeats_at_once_share_a_message_id_and_later_ones_do_not() -> None:
    stored = message()
    first = click_event(stored, "u", "0", "ua", AT, b"s")
    again = click_event(stored, "u", "0", "ua", AT + timedelta(milliseconds=500), b"s")
    later = click_event(stored, "u", "0", "ua", AT + timedelta(seconds=5), b"s")
    other_link = click_event(stored, "u", "1", "ua", AT, b"s")
    assert first.message_id == again.message_id
    assert len({first.message_id, later.message_id, other_link.message_id}) == 3
    assert first.properties | {} == {
        "journey": "j",
        "version": 1,
        "step": "send",
        "instance": "i1",
        "message": "i1:send:3",
        "channel": "email",
        "url": "u",
        "user_agent": "ua",
    }
    person = open_event(stored, "Thunderbird", AT, b"s")
    proxy = open_event(stored, "Mozilla/5.0", AT, b"s")
    assert person.message_id != proxy.message_id
    assert (person.properties["machine"], proxy.properties["machine"]) == (False, True)
    assert open_event(stored, "x" * 5000, AT, b"s").properties["user_agent"] == "x" * 512
    assert "Thunderbird" not in str(person.message_id)

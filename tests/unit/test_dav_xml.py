"""DAV XML from servers: multistatus reading, hostile documents refused, hrefs kept on one origin."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_comms.protocols.dav import DavClient, DavError, child_href
from spine_comms.protocols.dav.xmlwire import (
    error_conditions,
    mkcalendar_body,
    mkcol_addressbook_body,
    parse_multistatus,
    parse_xml,
    propfind_body,
    sync_collection_body,
    without_forbidden_characters,
)

IDENTITY = lambda href: href  # noqa: E731

# Radicale's answer to a Depth 1 PROPFIND on a home set (trimmed), with one unknown property.
RADICALE = b"""<?xml version='1.0' encoding='utf-8'?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:CS="http://calendarserver.org/ns/"
             xmlns:ICAL="http://apple.com/ns/ical/">
 <response><href>/ops%40spine.test/</href>
  <propstat><prop><resourcetype><principal/><collection/></resourcetype></prop>
   <status>HTTP/1.1 200 OK</status></propstat>
 </response>
 <response><href>/ops%40spine.test/spine-ops/</href>
  <propstat><prop>
   <resourcetype><collection/><C:calendar/></resourcetype>
   <displayname>Spine Ops</displayname>
   <ICAL:calendar-color>#1f6feb</ICAL:calendar-color>
   <C:supported-calendar-component-set><C:comp name="VEVENT"/><C:comp name="VTODO"/>
   </C:supported-calendar-component-set>
   <CS:getctag>"abc"</CS:getctag>
   <sync-token>http://radicale.org/ns/sync/1</sync-token>
   <supported-report-set><supported-report><report><sync-collection/></report></supported-report></supported-report-set>
  </prop><status>HTTP/1.1 200 OK</status></propstat>
  <propstat><prop><C:calendar-description/></prop><status>HTTP/1.1 404 Not Found</status></propstat>
 </response>
</multistatus>"""

# A sync-collection answer: one changed member with an ETag, one deleted, and the new token.
SYNC = b"""<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:">
 <d:response><d:href>http://127.0.0.1:8080/cal/a.ics</d:href>
  <d:propstat><d:prop><d:getetag>"e1"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
 <d:response><d:href>/cal/gone.ics</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response>
 <d:sync-token>token-2</d:sync-token>
</d:multistatus>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<multistatus xmlns="DAV:"><response><href>&lol3;</href></response></multistatus>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE m [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<multistatus xmlns="DAV:"><response><href>&xxe;</href></response></multistatus>"""


def test_a_radicale_home_set_listing_reads_as_resources_with_typed_values():
    resources, token = parse_multistatus(RADICALE, IDENTITY)
    assert token is None
    home, calendar = resources
    assert home.href == "/ops%40spine.test/" and home.props["{DAV:}resourcetype"] == [
        "{DAV:}principal",
        "{DAV:}collection",
    ]
    props = calendar.props
    assert calendar.status == 200
    assert props["{DAV:}displayname"] == "Spine Ops"
    assert props["{http://apple.com/ns/ical/}calendar-color"] == "#1f6feb"
    assert props["{urn:ietf:params:xml:ns:caldav}supported-calendar-component-set"] == ["VEVENT", "VTODO"]
    assert props["{http://calendarserver.org/ns/}getctag"] == '"abc"'
    assert props["{DAV:}supported-report-set"] == ["{DAV:}sync-collection"]
    assert props["{urn:ietf:params:xml:ns:caldav}calendar-description"] is None  # 404: None, not ""


def test_a_sync_report_gives_changed_with_etags_deleted_by_status_and_the_token():
    resources, token = parse_multistatus(SYNC, IDENTITY)
    assert token == "token-2"
    changed, gone = resources
    assert changed.etag == '"e1"' and changed.status == 200
    assert gone.href == "/cal/gone.ics" and gone.status == 404 and gone.etag is None


def test_hrefs_on_the_same_origin_become_paths_and_others_stay_urls():
    client = DavClient("http://127.0.0.1:8080/dav/", username=None, password=None)
    resources, _ = client_multistatus(client, SYNC)
    assert resources[0].href == "/cal/a.ics"
    foreign = SYNC.replace(b"http://127.0.0.1:8080/cal/a.ics", b"https://evil.example/cal/a.ics")
    resources, _ = client_multistatus(client, foreign)
    assert resources[0].href == "https://evil.example/cal/a.ics"
    with pytest.raises(DavError) as caught:
        client.path_of(resources[0].href)
    assert caught.value.kind == "redirect"


def client_multistatus(client: DavClient, body: bytes):
    return parse_multistatus(body, lambda href: client.localize(href, "/dav/"))


@pytest.mark.parametrize(
    "target",
    ["https://127.0.0.1:8080/x", "http://127.0.0.2:8080/x", "http://127.0.0.1:8081/x", "//127.0.0.2/x", "mailto:a@b"],
)
def test_requests_to_another_origin_are_refused_before_any_connection(target):
    client = DavClient("http://127.0.0.1:8080/", username="u", password="p")
    with pytest.raises(DavError) as caught:
        client.request("GET", target)
    assert caught.value.kind == "redirect"
    assert client.requests == 0


def test_the_certificate_name_counts_as_the_same_origin():
    client = DavClient("https://127.0.0.1:8443/", username=None, password=None, server_name="mail.spine.test")
    assert client.path_of("https://mail.spine.test:8443/ops/") == "/ops/"
    assert client.path_of("cal/", "/ops/") == "/ops/cal/"
    with pytest.raises(DavError):
        client.path_of("/ops/with space/")


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, BILLION_LAUGHS.decode().encode("utf-16")])
def test_dtds_and_entities_are_refused(body):
    with pytest.raises(DavError) as caught:
        parse_multistatus(body, IDENTITY)
    assert caught.value.kind == "protocol"
    assert "DOCTYPE" in caught.value.message


def test_deep_nesting_is_refused_not_recursed():
    body = b'<multistatus xmlns="DAV:">' + b"<a>" * 5000 + b"</a>" * 5000 + b"</multistatus>"
    with pytest.raises(DavError, match="nested deeper"):
        parse_xml(body)


def test_control_characters_servers_copy_from_event_or_card_text_are_removed_before_parsing():
    # Radicale and Xandikos put calendar-data/address-data into the XML verbatim: a BEL, an ESC
    # and their character references, all forbidden by XML 1.0, would make the whole answer unreadable.
    card = "BEGIN:VCARD\r\nFN:bell\x07 &#27;[31m &#x1B;]0;t&#7; tab\tok\r\nEND:VCARD"
    body = (
        '<multistatus xmlns="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav"><response><href>/b/x.vcf</href>'
        f'<propstat><prop><getetag>"1"</getetag><card:address-data>{card}</card:address-data></prop>'
        "<status>HTTP/1.1 200 OK</status></propstat></response></multistatus>"
    ).encode()
    (resource,), _ = parse_multistatus(body, IDENTITY)
    data = resource.props["{urn:ietf:params:xml:ns:carddav}address-data"]
    assert data == "BEGIN:VCARD\n" + "FN:bell [31m ]0;t tab\tok\nEND:VCARD"
    assert without_forbidden_characters(b"a&#10;b&#x9;c&#xD;&#65;") == b"a&#10;b&#x9;c&#xD;&#65;"


@pytest.mark.parametrize("body", [b"", b"<html>oops</html>", b"<?xml version='1.0'?>", b"\xff\xfe\x00"])
def test_not_a_multistatus_is_a_protocol_error(body):
    with pytest.raises(DavError) as caught:
        parse_multistatus(body, IDENTITY)
    assert caught.value.kind == "protocol"


@settings(max_examples=400)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise_anything_but_dav_error(data):
    try:
        parse_multistatus(data, IDENTITY)
    except DavError as exc:
        assert exc.kind == "protocol"


XMLISH = st.lists(
    st.sampled_from(["<d:response>", "</d:response>", "<d:href>", "</d:href>", "<d:propstat>", "</d:propstat>",
                     "<d:prop>", "</d:prop>", "<d:status>HTTP/1.1 200 OK</d:status>", "<d:status>junk</d:status>",
                     "<d:getetag>\"x\"</d:getetag>", "<d:resourcetype><d:collection/></d:resourcetype>", "/a%20b/",
                     "<d:sync-token>t</d:sync-token>", "&amp;", "&bogus;", "<x:y xmlns:x='urn:x'/>", "]]>"]),
    max_size=40,
)  # fmt: skip


@settings(max_examples=400)
@given(XMLISH)
def test_multistatus_shaped_noise_parses_or_is_a_protocol_error(parts):
    body = ('<d:multistatus xmlns:d="DAV:">' + "".join(parts) + "</d:multistatus>").encode()
    try:
        resources, _ = parse_multistatus(body, IDENTITY)
    except DavError as exc:
        assert exc.kind == "protocol"
        return
    for resource in resources:
        assert isinstance(resource.href, str) and isinstance(resource.status, int)


@settings(max_examples=200)
@given(st.text(max_size=60))
def test_built_bodies_escape_any_display_name(name):
    name = "".join(c for c in name if c.isprintable())
    body = mkcalendar_body(name, "#112233", ["VEVENT"], name)
    root = parse_xml(body)
    assert root.findtext(".//{DAV:}displayname") == name
    assert parse_xml(mkcol_addressbook_body(name, None)).findtext(".//{DAV:}displayname") == name


def test_request_bodies_declare_their_namespaces():
    root = parse_xml(propfind_body(["{DAV:}displayname", "{urn:x}custom"]))
    assert [c.tag for c in root.find("{DAV:}prop")] == ["{DAV:}displayname", "{urn:x}custom"]
    sync = parse_xml(sync_collection_body(None, ["{DAV:}getetag"]))
    assert sync.findtext("{DAV:}sync-token") == "" and sync.findtext("{DAV:}sync-level") == "1"
    with pytest.raises(DavError):
        propfind_body(["displayname"])  # not Clark notation


def test_error_conditions_name_the_failed_precondition():
    body = b'<D:error xmlns:D="DAV:"><D:valid-sync-token/></D:error>'
    assert error_conditions(body) == ["{DAV:}valid-sync-token"]
    assert error_conditions(b"not xml") == []


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "a\\b", "x..y", "a\nb"])
def test_child_href_refuses_names_that_climb_or_nest(name):
    with pytest.raises(DavError) as caught:
        child_href("/ops/calendars/", name)
    assert caught.value.kind == "protocol"


def test_child_href_percent_encodes():
    assert child_href("/ops%40spine.test/", "spine ops") == "/ops%40spine.test/spine%20ops"
    assert child_href("/ops/calendars", "e1.ics") == "/ops/calendars/e1.ics"


def test_credentials_in_the_base_url_are_refused():
    with pytest.raises(DavError, match="password_ref"):
        DavClient("https://ops:secret@127.0.0.1/", username=None, password=None)


@pytest.mark.parametrize(
    ("status", "condition", "kind"),
    [(412, "C:max-resource-size", "too_large"), (403, "C:max-resource-size", "too_large"),
     (412, "CR:max-resource-size", "too_large"), (412, "C:no-uid-conflict", "conflict"),
     (412, "C:supported-calendar-data", "protocol"), (412, None, "precondition"), (403, None, "forbidden")],
)  # fmt: skip
def test_a_caldav_or_carddav_precondition_is_not_taken_for_an_etag_mismatch(status, condition, kind):
    """Stalwart answers 412 max-resource-size to a too-large iCalendar (RFC 4791 5.3.2.1): a size
    error, not a conflict the sync would re-plan."""
    from spine_comms.protocols.dav.model import DavResponse

    body = b""
    if condition:
        body = (b'<?xml version="1.0"?><D:error xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" '
                b'xmlns:CR="urn:ietf:params:xml:ns:carddav"><' + condition.encode() + b"/></D:error>")  # fmt: skip
    client = DavClient("http://127.0.0.1:8080/", username=None, password=None)
    error = client.error_for("PUT", DavResponse(status, {}, body, "http://127.0.0.1:8080/c/x.ics", 1))
    assert error.kind == kind
    if condition:
        assert condition.split(":")[1] in error.message

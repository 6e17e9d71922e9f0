"""vCards: building 4.0 and 3.0, reading what real clients write, revising without loss, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_comms.contacts.vcard import (
    CardError,
    Changes,
    Contact,
    Email,
    Phone,
    build,
    clean_text,
    one_line,
    parse,
    parse_email_arg,
    parse_phone_arg,
    revise,
    split_name,
)

IOS_3_0 = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nPRODID:-//Apple Inc.//iPhone OS 17.2//EN\r\nN:Appleseed;Johnny;;;\r\n"
    "FN:Johnny Appleseed\r\nORG:Apple Inc.;Retail\r\n"
    "item1.EMAIL;type=INTERNET;type=HOME;type=pref:johnny@example.com\r\nitem1.X-ABLabel:_$!<Other>!$_\r\n"
    "EMAIL;type=INTERNET;type=WORK:j.appleseed@apple.example\r\n"
    "TEL;type=CELL;type=VOICE;type=pref:+1 (555) 010-0199\r\nNOTE:Met at WWDC\\nlikes apples\\, pears\r\n"
    "PHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQSkZJRgABAQAAAQABAAD\r\n /2wBDAAgGBgcGBQgHBwcJ\r\n"
    "UID:3B1B0B6E-1B2C-4A9F-9C3D-0E8F7A6B5C4D\r\nEND:VCARD\r\n"
)
NEXTCLOUD_4_0 = (
    "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1\r\nFN:Ada Lovelace\r\n"
    "N:Lovelace;Ada;Augusta;;\r\nEMAIL;TYPE=work;PREF=1:ada@engine.example\r\nEMAIL;TYPE=home:ada@home.example\r\n"
    'TEL;VALUE=uri;TYPE="voice,cell":tel:+44-20-7946-0000\r\nORG:Analytical Engines\r\n'
    "ADR;TYPE=home:;;12 St James's Square;London;;SW1Y 4JH;UK\r\nEND:VCARD\r\n"
)


def lines(text: str) -> list[str]:
    """The card's logical lines (unfolded), as a reader that splits on CRLF sees them."""
    return text.replace("\r\n ", "").split("\r\n")


def test_build_4_0_has_the_fields_and_reads_back():
    contact = Contact(
        uid="abc-123", full_name="Ada King Lovelace", given="Ada King", family="Lovelace",
        emails=[Email("ada@x.example", ("work",), True), Email("ada@home.example")],
        phones=[Phone("+1 555 0100", ("cell",))], org="Engines; Ltd", note="line one\nline two",
    )  # fmt: skip
    text = build(contact)
    assert text.startswith("BEGIN:VCARD\r\nVERSION:4.0\r\n")
    assert "EMAIL;PREF=1;TYPE=work:ada@x.example" in lines(text) or "EMAIL;TYPE=work;PREF=1:ada@x.example" in lines(
        text
    )
    assert "N:Lovelace;Ada King;;;" in lines(text)
    back = parse(text)
    assert back.problems == []
    assert (back.uid, back.full_name) == ("abc-123", "Ada King Lovelace")
    assert (back.given, back.family) == ("Ada King", "Lovelace")
    assert back.emails == [Email("ada@x.example", ("work",), True), Email("ada@home.example")]
    assert back.phones == [Phone("+1 555 0100", ("cell",))]
    assert back.org == "Engines; Ltd" and back.note == "line one\nline two" and back.version == "4.0"


def test_build_3_0_uses_upper_case_types_and_pref():
    text = build(Contact(uid="u1", full_name="Bo", emails=[Email("bo@x.example", ("work",), True)]), "3.0")
    assert "VERSION:3.0" in lines(text)
    assert "EMAIL;TYPE=WORK,pref:bo@x.example" in lines(text)
    assert parse(text).emails == [Email("bo@x.example", ("work",), True)]


def test_build_refuses_a_card_without_name_or_uid_and_a_bad_version():
    with pytest.raises(CardError, match="name"):
        build(Contact(uid="u1"))
    with pytest.raises(CardError, match="UID"):
        build(Contact(full_name="X"))
    with pytest.raises(CardError, match=r"3\.0 or 4\.0"):
        build(Contact(uid="u", full_name="X"), "2.1")


def test_an_ios_3_0_card_is_read_with_groups_types_and_escapes():
    card = parse(IOS_3_0)
    assert card.problems == []
    assert (card.version, card.uid) == ("3.0", "3B1B0B6E-1B2C-4A9F-9C3D-0E8F7A6B5C4D")
    assert (card.full_name, card.given, card.family) == ("Johnny Appleseed", "Johnny", "Appleseed")
    assert card.emails == [Email("johnny@example.com", ("home",), True), Email("j.appleseed@apple.example", ("work",))]
    assert card.phones == [Phone("+1 (555) 010-0199", ("cell",), True)]
    assert card.org == "Apple Inc., Retail"
    assert card.note == "Met at WWDC\nlikes apples, pears"


def test_a_4_0_card_with_uri_phones_and_pref_parameters_is_read():
    card = parse(NEXTCLOUD_4_0.encode())
    assert card.version == "4.0" and card.uid == "urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1"
    assert card.emails[0] == Email("ada@engine.example", ("work",), True)
    assert card.phones == [Phone("+44-20-7946-0000", ("cell",))]
    assert "Lovelace" in card.summary() and "<ada@home.example>" in card.summary()


def test_a_broken_card_is_read_leniently_and_says_so():
    text = "BEGIN:VCARD\r\nVERSION:3.0\r\nthis line has no colon\r\nFN:Half Broken\r\nEMAIL:hb@x.example\r\n"
    card = parse(text)  # no END:VCARD, a junk line: vobject refuses it
    assert card.full_name == "Half Broken" and card.emails == [Email("hb@x.example")]
    assert card.problems[0].startswith("not a strictly valid vCard")
    assert parse(b"\xff\xfe garbage").problems  # not even a card: problems, no exception


def test_hostile_values_cannot_add_properties():
    evil = "hi\nEMAIL:evil@x\r\nTEL:666\rNOTE:x\u2028EMAIL:evil2@x\x85UID:other\x1cEND:VCARD\x00"
    contact = Contact(uid="u1", full_name="Eve\nEMAIL:evil3@x", note=evil, org="Org\r\nEMAIL:evil4@x")
    text = build(contact)
    for separator in ("\r\n", "\n", "\r", "\u2028", "\x85", "\x1c"):
        assert not any(piece.startswith(("EMAIL", "TEL", "UID:other", "END:VCARD\x00")) and "evil" in piece
                       for piece in text.replace("\r\n ", "").split(separator)[1:] if "evil" in piece)  # fmt: skip
    card = parse(text)
    assert card.emails == [] and card.phones == [] and card.uid == "u1"
    assert "EMAIL:evil@x" in card.note and card.full_name == "Eve EMAIL:evil3@x"
    assert all(not line.startswith("EMAIL") for line in text.splitlines())


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a@b.example", Email("a@b.example")), ("work:a@b.example", Email("a@b.example", ("work",))),
     ("work,pref:a@b.example", Email("a@b.example", ("work",), True)), ("mailto:a@b.example", Email("a@b.example"))],
)  # fmt: skip
def test_email_arguments(value, expected):
    assert parse_email_arg(value) == expected


@pytest.mark.parametrize("value", ["nobody", "a b@c", "wo rk:a@b", "a@b\nEMAIL:x@y", "<a@b>", "x;y:a@b"])
def test_bad_email_arguments_are_refused(value):
    with pytest.raises(CardError):
        parse_email_arg(value)


def test_phone_arguments():
    assert parse_phone_arg("cell:+1 (555) 010-0199") == Phone("+1 (555) 010-0199", ("cell",))
    assert parse_phone_arg("tel:+1-555") == Phone("+1-555")
    with pytest.raises(CardError):
        parse_phone_arg("call me")
    with pytest.raises(CardError):
        parse_phone_arg("+1\nEMAIL:x@y")


def test_split_name():
    assert split_name("Ada King Lovelace") == ("Ada King", "Lovelace")
    assert split_name("Lovelace, Ada") == ("Ada", "Lovelace")
    assert split_name("Cher") == ("Cher", "")


def test_revise_keeps_what_it_does_not_manage_and_changes_the_rest():
    text, notes = revise(
        IOS_3_0,
        Changes(full_name="John Appleseed", add_emails=[Email("new@x.example", ("work",))],
                remove_emails=["JOHNNY@example.com", "absent@x.example"], note=""),
    )  # fmt: skip
    assert notes == ["email absent@x.example was not on the card"]
    card = parse(text)
    assert card.version == "3.0" and card.uid == "3B1B0B6E-1B2C-4A9F-9C3D-0E8F7A6B5C4D"
    assert (card.full_name, card.given, card.family) == ("John Appleseed", "John", "Appleseed")
    assert [e.address for e in card.emails] == ["j.appleseed@apple.example", "new@x.example"]
    assert card.note is None and card.phones  # the phone was not touched
    assert "PHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJ" in lines(text)
    assert any(line.upper().startswith("ITEM1.X-ABLABEL") for line in lines(text))


def test_revise_replaces_phones_and_refuses_a_broken_card():
    text, _ = revise(NEXTCLOUD_4_0, Changes(phones=[Phone("+1 555", ("work",))], given="Augusta Ada"))
    card = parse(text)
    assert card.phones == [Phone("+1 555", ("work",))] and card.given == "Augusta Ada" and card.family == "Lovelace"
    assert any(line.startswith("ADR") for line in lines(text))
    with pytest.raises(CardError, match="not a valid vCard"):
        revise("BEGIN:VCARD\r\nFN:x\r\n", Changes(note="n"))


def test_matches_and_summary():
    card = parse(IOS_3_0)
    assert card.matches("apple") and card.matches("APPLE.EXAMPLE") and card.matches("johnny appleseed")
    assert not card.matches("wozniak")
    assert card.summary().startswith("Johnny Appleseed · <johnny@example.com>, <j.appleseed@apple.example>")


def test_clean_text_keeps_tabs_drops_controls():
    assert clean_text("a\tb\x00c\x1bd") == "a\tbcd"
    assert clean_text("a\u2028b", multiline=True) == "a\nb"


# Pieces of cards and of line syntax, glued in any order: most draws are near-cards that stress both readers.
PIECES = [
    *"BEGINVCARDFNUMLTX:;,.=\"\\ \r\n\t\x00\x1c\u2028\x85é@",
    "BEGIN:VCARD\r\n", "END:VCARD\r\n", "EMAIL;TYPE=", "N:", "FN:", "VERSION:4.0\r\n", "\r\n ", "item1.", "ORG:",
]  # fmt: skip
hostile = st.lists(st.sampled_from(PIECES) | st.text(max_size=8), max_size=80).map("".join)


@settings(max_examples=400, deadline=None)
@given(hostile)
def test_parse_never_raises(text):
    card = parse(text)
    assert isinstance(card, Contact)
    card.summary()
    card.to_dict()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200), st.text(max_size=60))
def test_any_value_round_trips_without_adding_properties(name, note, org):
    contact = Contact(uid="u1", full_name="x" + name, note=note, org=org)
    card = parse(build(contact))
    assert card.problems == [] and card.emails == [] and card.phones == [] and card.uid == "u1"
    assert card.full_name == one_line("x" + name)
    assert card.note == (clean_text(note, multiline=True) or None)
    assert card.org == (one_line(org) or None)


def test_a_large_card_is_read_without_its_photo_and_revised_with_the_photo_kept_exactly():
    import base64

    from spine_comms.contacts.vcard import MAX_CARD_BYTES, CardError, Changes, parse, parse_email_arg, revise

    photo = base64.b64encode(bytes(i % 251 for i in range(400_000))).decode()
    line = "PHOTO;ENCODING=b;TYPE=JPEG:" + photo
    folded = "\r\n ".join(line[i : i + 74] for i in range(0, len(line), 74)) + "\r\n"
    card = f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:p1\r\nFN:Pat\r\nN:Pat;;;;\r\n{folded}EMAIL:p@ex.org\r\nEND:VCARD\r\n"
    read = parse(card)
    assert (read.uid, read.full_name, [e.address for e in read.emails], read.problems) == (
        "p1",
        "Pat",
        ["p@ex.org"],
        [],
    )
    text, _ = revise(card, Changes(add_emails=[parse_email_arg("q@ex.org")]))
    assert folded in text and [e.address for e in parse(text).emails] == ["p@ex.org", "q@ex.org"]
    huge = card.replace(folded, folded * (MAX_CARD_BYTES // len(folded) + 1))
    assert "over the limit" in parse(huge).problems[0]
    with pytest.raises(CardError, match="limit"):
        revise(huge, Changes(add_emails=[parse_email_arg("q@ex.org")]))

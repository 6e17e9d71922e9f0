"""The fake held to reference/stalwart.md: raw HTTP, no adapter, so the adapter cannot hide a wrong fake.

Each test names the section it checks. If Stalwart is found to behave otherwise, fix the
reference, then the fake, then these tests, in that order.
"""

from __future__ import annotations

import base64
import http.client
import json
import time

import pytest

from tests.stalwart_fake import FakeStalwart, bind_line

USING = ["urn:ietf:params:jmap:core", "urn:stalwart:jmap"]


def raw(fake: FakeStalwart, method: str, path: str, body=None, headers=None) -> tuple[int, dict, bytes]:
    """One request with http.client (no redirects followed); returns status, headers (multi), body."""
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers or {})
    response = conn.getresponse()
    payload = response.read()
    got = {}
    for name, value in response.getheaders():
        got.setdefault(name.lower(), []).append(value)
    conn.close()
    return response.status, got, payload


def basic(user: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def admin(fake: FakeStalwart) -> dict:
    return basic(fake.admin_login, fake.admin_password)


def jmap(fake: FakeStalwart, *calls, headers=None) -> list:
    method_calls = [[name, args, f"c{i}"] for i, (name, args) in enumerate(calls)]
    status, _, body = raw(fake, "POST", "/jmap/", {"using": USING, "methodCalls": method_calls},
                          {**admin(fake), "Content-Type": "application/json", **(headers or {})})  # fmt: skip
    assert status == 200, body
    return json.loads(body)["methodResponses"]


@pytest.fixture
def v016():
    with FakeStalwart("0.16", dkim_delay=0.3) as fake:
        fake.add_domain("example.test")
        yield fake


@pytest.fixture
def v015():
    with FakeStalwart("0.15") as fake:
        fake.add_domain("example.test")
        yield fake


# ---- 1C: health, both forms


@pytest.mark.parametrize("mode", ["0.16", "0.15"])
def test_health_is_problem_json_200_without_auth(mode):
    with FakeStalwart(mode) as fake:
        for probe in ("live", "ready"):
            status, headers, body = raw(fake, "GET", f"/healthz/{probe}")
            assert status == 200
            assert headers["content-type"] == ["application/problem+json"]
            assert json.loads(body) == {"type": "about:blank", "title": "OK", "status": 200, "detail": "OK"}
        fake.ready = False
        assert raw(fake, "GET", "/healthz/ready")[0] == 503
        assert raw(fake, "GET", "/healthz/live")[0] == 200
        assert raw(fake, "GET", "/healthz/other")[0] == 404


# ---- 0 and 1A: the 0.16 routes


def test_well_known_jmap_is_a_307_with_an_empty_body(v016):
    status, headers, body = raw(v016, "GET", "/.well-known/jmap")
    assert status == 307
    assert headers["location"] == ["/jmap/session"]  # an absolute path: a proxy's prefix is not in it
    assert headers["cache-control"] == ["no-cache"]
    assert body == b""
    with pytest.raises(ValueError):
        json.loads(body)  # the thunderbird-accounts trap: .json() on the 307 raises


def test_session_without_auth_lists_no_accounts_and_with_auth_the_caller(v016):
    status, _, body = raw(v016, "GET", "/jmap/session")
    anonymous = json.loads(body)
    assert status == 200 and anonymous["accounts"] == {} and anonymous["capabilities"]
    status, _, body = raw(v016, "GET", "/jmap/session", headers=admin(v016))
    session = json.loads(body)
    assert session["username"] == "admin@example.test"
    assert session["apiUrl"] == f"{v016.url}/jmap/"
    (account,) = session["accounts"].values()
    assert "urn:stalwart:jmap" in account["accountCapabilities"]
    assert "urn:stalwart:jmap" not in session["capabilities"]  # advertised per account only
    assert session["capabilities"]["urn:ietf:params:jmap:core"]["maxCallsInRequest"] == 16


def test_the_old_rest_routes_are_404_on_016_and_api_account_answers(v016):
    for path in ("/api/principal", "/api/dkim", "/api/dns/records/example.test", "/api/settings/group"):
        status, headers, _ = raw(v016, "GET", path, headers=admin(v016))
        assert status == 404, path
        assert headers["content-type"] == ["application/problem+json"]
    assert raw(v016, "POST", "/api", b"{}", admin(v016))[0] == 404  # the docs' curl examples are wrong
    status, _, body = raw(v016, "GET", "/api/account", headers=admin(v016))
    assert status == 200 and "edition" in json.loads(body)


def test_401_is_problem_json_with_both_challenges(v016):
    status, headers, body = raw(v016, "POST", "/jmap/", {"using": USING, "methodCalls": []},
                                {**basic(v016.admin_login, "wrong"), "Content-Type": "application/json"})  # fmt: skip
    assert status == 401
    assert headers["content-type"] == ["application/problem+json"]
    assert json.loads(body)["status"] == 401
    challenges = headers["www-authenticate"]
    assert len(challenges) == 2
    assert (
        challenges[0].startswith('Bearer realm="Stalwart Server"') and challenges[1] == 'Basic realm="Stalwart Server"'
    )
    assert raw(v016, "GET", "/jmap/session", headers=basic("admin", "wrong"))[0] == 401


def test_bare_username_gets_the_default_domain_and_api_keys_are_bearer(v016):
    status, _, body = raw(v016, "GET", "/jmap/session", headers=basic("  ADMIN ", v016.admin_password))
    assert status == 200 and json.loads(body)["username"] == "admin@example.test"
    token = v016.add_api_key()
    assert token.startswith("API_")
    status, _, body = raw(v016, "GET", "/jmap/session", headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and json.loads(body)["accounts"]
    assert raw(v016, "GET", "/jmap/session", headers={"Authorization": "Bearer API_bogus"})[0] == 401


def test_post_jmap_demands_application_json(v016):
    request = {"using": USING, "methodCalls": [["x:Domain/get", {"ids": None}, "c0"]]}
    status, _, body = raw(v016, "POST", "/jmap/", request, {**admin(v016), "Content-Type": "text/plain"})
    assert status == 400 and json.loads(body)["type"] == "urn:ietf:params:jmap:error:notJSON"
    assert raw(v016, "POST", "/jmap/", request, {**admin(v016), "Content-Type": "application/json"})[0] == 200
    status, _, body = raw(v016, "POST", "/jmap/", b"{not json", {**admin(v016), "Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["type"].endswith(":notJSON")
    status, _, body = raw(v016, "POST", "/jmap/", {"using": ["urn:example:nope"], "methodCalls": []},
                          {**admin(v016), "Content-Type": "application/json"})  # fmt: skip
    assert status == 400 and json.loads(body)["type"].endswith(":unknownCapability")


def test_domain_get_has_dns_zone_file_in_bind_form_without_ttls(v016):
    v016.add_dkim("example.test", "rsa", selector="v1-rsa-20260101")
    domain_id = v016.domain_id("example.test")
    (reply,) = jmap(v016, ("x:Domain/get", {"ids": [domain_id]}))
    zone = reply[1]["list"][0]["dnsZoneFile"]
    assert "example.test. IN MX 10 mail.example.test.\n" in zone
    assert 'example.test. IN TXT "v=spf1 mx -all"' in zone
    assert "v1-rsa-20260101._domainkey.example.test. IN TXT (\n" in zone
    dkim = zone.split("v1-rsa-20260101._domainkey.example.test. IN TXT (\n")[1].split("\n)")[0]
    chunks = [line.strip().strip('"') for line in dkim.splitlines()]
    assert len(chunks) >= 2 and all(len(c.encode()) <= 255 for c in chunks)
    assert "".join(chunks).startswith("v=DKIM1; k=rsa; h=sha256; p=MIIB")
    for line in zone.splitlines():  # no TTLs: owner, then the class
        if line and not line.startswith((" ", ")")):
            assert line.split()[1] == "IN", line
    # Only when properties is null or names it.
    (reply,) = jmap(v016, ("x:Domain/get", {"ids": [domain_id], "properties": ["name"]}))
    assert "dnsZoneFile" not in reply[1]["list"][0]


def test_zone_file_lists_retired_keys_and_report_records_only_with_a_report_address(v016):
    v016.add_dkim("example.test", "rsa", selector="old-rsa", stage="retired")
    domain_id = v016.domain_id("example.test")
    v016.domains[domain_id]["reportAddressUri"] = None  # the default is mailto:postmaster
    (reply,) = jmap(v016, ("x:Domain/get", {"ids": [domain_id]}))
    zone = reply[1]["list"][0]["dnsZoneFile"]
    assert "old-rsa._domainkey.example.test. IN TXT" in zone  # records.rs has no stage filter
    assert "_dmarc." not in zone and "_smtp._tls." not in zone
    v016.domains[domain_id]["reportAddressUri"] = "mailto:reports"
    (reply,) = jmap(v016, ("x:Domain/get", {"ids": [domain_id]}))
    zone = reply[1]["list"][0]["dnsZoneFile"]
    assert '_dmarc.example.test. IN TXT "v=DMARC1; p=reject; rua=mailto:reports@example.test"' in zone
    assert '_smtp._tls.example.test. IN TXT "v=TLSRPTv1; rua=mailto:reports@example.test"' in zone


def test_bind_line_chunks_long_txt_and_escapes_quotes():
    assert bind_line("a.", "TXT", 'x"y') == 'a. IN TXT "x\\"y"'
    text = bind_line("a.", "TXT", "z" * 600)
    assert text.splitlines()[0] == "a. IN TXT (" and text.endswith("\n)")
    assert [len(line.strip().strip('"')) for line in text.splitlines()[1:-1]] == [255, 255, 90]


def test_dkim_secrets_read_back_masked_and_public_key_is_derived(v016):
    sig = v016.add_dkim("example.test", "ed25519")
    (reply,) = jmap(v016, ("x:DkimSignature/get", {"ids": None}))
    (item,) = reply[1]["list"]
    assert item["privateKey"] == {"@type": "Text", "secret": "****"}
    assert item["publicKey"] == sig["publicKey"] and len(base64.b64decode(item["publicKey"])) == 32
    assert item["@type"] == "Dkim1Ed25519Sha256" and item["stage"] == "active"


def test_dkim_set_needs_the_private_key_and_rejects_duplicates(v016):
    from tests.stalwart_fake import generate_private_pem

    domain_id = v016.domain_id("example.test")
    no_key = {"@type": "Dkim1RsaSha256", "domainId": domain_id, "selector": "s1"}
    pem = generate_private_pem("ed25519")
    wrong_kind = dict(no_key, privateKey={"@type": "Text", "secret": pem})
    good = {"@type": "Dkim1Ed25519Sha256", "domainId": domain_id, "selector": "s1",
            "privateKey": {"@type": "Text", "secret": pem}}  # fmt: skip
    bad_domain = dict(good, domainId="nope")
    (reply,) = jmap(v016, ("x:DkimSignature/set", {"create": {"a": no_key, "b": wrong_kind, "c": good,
                                                               "d": bad_domain}}))  # fmt: skip
    result = reply[1]
    assert result["notCreated"]["a"]["properties"] == ["privateKey"]
    assert result["notCreated"]["b"]["type"] == "invalidProperties"
    assert result["notCreated"]["d"]["type"] == "invalidForeignKey"
    assert set(result["created"]) == {"c"}
    # No uniqueness index on (domain, selector): a second key under the same selector is accepted.
    (again,) = jmap(v016, ("x:DkimSignature/set", {"create": {"e": good}}))
    assert set(again[1]["created"]) == {"e"}
    (listed,) = jmap(v016, ("x:DkimSignature/get", {"ids": None}))
    assert [k["selector"] for k in listed[1]["list"]].count("s1") == 2
    assert all(k["report"] is True for k in listed[1]["list"])  # `report` defaults to true


def test_duplicate_domain_is_a_primary_key_violation(v016):
    domain = {"name": "example.test", "certificateManagement": {"@type": "Manual"},
              "dkimManagement": {"@type": "Manual"}, "dnsManagement": {"@type": "Manual"}}  # fmt: skip
    (reply,) = jmap(v016, ("x:Domain/set", {"create": {"n": domain}}))
    error = reply[1]["notCreated"]["n"]
    assert error["type"] == "primaryKeyViolation" and error["properties"] == ["name"]
    assert error["objectId"] == v016.domain_id("example.test")


def test_automatic_dkim_arrives_later_through_a_task(v016):
    domain = {"name": "new.test", "certificateManagement": {"@type": "Manual"},
              "dkimManagement": {"@type": "Automatic"}, "dnsManagement": {"@type": "Manual"}}  # fmt: skip
    (reply,) = jmap(v016, ("x:Domain/set", {"create": {"n": domain}}))
    domain_id = reply[1]["created"]["n"]["id"]
    query = ("x:DkimSignature/query", {"filter": {"domainId": domain_id}})
    assert jmap(v016, query)[0][1]["ids"] == []  # not yet: generation is asynchronous
    (tasks,) = jmap(v016, ("x:Task/get", {"ids": None}))
    assert tasks[1]["list"][0]["@type"] == "DkimManagement" and tasks[1]["list"][0]["status"] == "pending"
    deadline = time.monotonic() + 5
    while not jmap(v016, query)[0][1]["ids"] and time.monotonic() < deadline:
        time.sleep(0.05)
    ids = jmap(v016, query)[0][1]["ids"]
    (got,) = jmap(v016, ("x:DkimSignature/get", {"ids": ids}))
    kinds = sorted(k["@type"] for k in got[1]["list"])
    assert kinds == ["Dkim1Ed25519Sha256", "Dkim1RsaSha256"]
    assert all(k["selector"].startswith(("v1-rsa-", "v1-ed25519-")) for k in got[1]["list"])
    assert jmap(v016, ("x:Task/get", {"ids": None}))[0][1]["list"][0]["status"] == "completed"


def test_weak_passwords_are_invalid_properties_on_secret_and_secrets_are_masked(v016):
    def account(secret):
        return {"@type": "User", "name": "alice", "domainId": v016.domain_id("example.test"),
                "credentials": {"0": {"@type": "Password", "secret": secret}}}  # fmt: skip

    (reply,) = jmap(v016, ("x:Account/set", {"create": {"short": account("abc"), "weak": account("password1"),
                                                          "ok": account("tide-Harbor-91-lantern")}}))  # fmt: skip
    result = reply[1]
    assert result["notCreated"]["short"] == {"type": "invalidProperties", "properties": ["secret"],
                                             "description": "Password must be at least 8 characters long."}  # fmt: skip
    assert result["notCreated"]["weak"]["description"].startswith("Password is too weak.")
    assert set(result["created"]) == {"ok"}
    (got,) = jmap(v016, ("x:Account/get", {"ids": None}))
    assert got[1]["list"][0]["credentials"]["0"]["secret"] == "****"


def test_method_errors_ride_inside_a_200(v016):
    replies = jmap(v016, ("x:Nothing/get", {}), ("x:Domain/query", {}))
    assert replies[0][0] == "error" and replies[0][1]["type"] == "unknownMethod"
    assert replies[1][0] == "x:Domain/query"
    v016.forbidden.add(v016.admin_login)
    (reply,) = jmap(v016, ("x:Domain/get", {"ids": None}))
    assert reply[0] == "error" and reply[1]["type"] == "forbidden"


# ---- 1B: the 0.15 REST routes


def test_015_wraps_data_and_addresses_principals_by_name(v015):
    status, _, body = raw(v015, "GET", "/api/principal?types=domain&page=1&limit=0", headers=admin(v015))
    assert status == 200
    data = json.loads(body)["data"]
    assert data["total"] == 1 and data["items"][0]["name"] == "example.test"
    status, _, body = raw(v015, "GET", "/api/principal/example.test", headers=admin(v015))
    assert json.loads(body)["data"]["name"] == "example.test"


def test_015_management_errors_are_http_200(v015):
    status, _, body = raw(v015, "GET", "/api/principal/nobody", headers=admin(v015))
    assert status == 200 and json.loads(body) == {"error": "notFound", "item": "nobody"}
    status, _, body = raw(v015, "POST", "/api/principal", {"type": "domain", "name": "example.test"}, admin(v015))
    assert status == 200 and json.loads(body) == {"error": "fieldAlreadyExists", "field": "name",
                                                  "value": "example.test"}  # fmt: skip
    user = {"type": "individual", "name": "jane", "secrets": ["pw"], "emails": ["jane@other.test"]}
    status, _, body = raw(v015, "POST", "/api/principal", user, admin(v015))
    assert status == 200 and json.loads(body) == {"error": "notFound", "item": "other.test"}


def test_015_auth_errors_use_real_statuses_without_challenge(v015):
    status, headers, body = raw(v015, "GET", "/api/principal", headers=basic("admin", "wrong"))
    assert status == 401 and "www-authenticate" not in headers
    assert headers["content-type"] == ["application/problem+json"] and json.loads(body)["status"] == 401
    v015.forbidden.add("admin")
    assert raw(v015, "GET", "/api/principal", headers=admin(v015))[0] == 403
    assert raw(v015, "GET", "/api/nothing", headers=basic("admin", "wrong"))[0] == 401  # auth before routing


def test_015_api_keys_as_basic_or_bearer_api_prefix(v015):
    secret = v015.add_api_key(name="spine")
    assert raw(v015, "GET", "/api/principal", headers=basic("spine", secret))[0] == 200
    token = "api_" + base64.b64encode(f"spine:{secret}".encode()).decode()
    assert raw(v015, "GET", "/api/principal", headers={"Authorization": f"Bearer {token}"})[0] == 200
    assert raw(v015, "GET", "/api/principal", headers={"Authorization": f"Bearer {secret}"})[0] == 401


def test_015_post_dkim_defaults_and_one_key_per_algorithm(v015):
    body = {"id": None, "algorithm": "Rsa", "domain": "example.test", "selector": None}
    status, _, answer = raw(v015, "POST", "/api/dkim", body, admin(v015))
    assert status == 200 and json.loads(answer) == {"data": None}
    now = time.gmtime()
    _, _, group = raw(v015, "GET", "/api/settings/group?prefix=signature&suffix=algorithm", headers=admin(v015))
    (item,) = json.loads(group)["data"]["items"]
    assert item["_id"] == "rsa-example.test"
    assert item["selector"] == f"{now.tm_year:04}{now.tm_mon:02}r"
    assert item["algorithm"] == "rsa-sha256" and item["headers.0"] == "From"
    _, _, public = raw(v015, "GET", "/api/dkim/rsa-example.test", headers=admin(v015))
    assert base64.b64decode(json.loads(public)["data"])[:2] == b"\x30\x82"  # DER
    status, _, answer = raw(v015, "POST", "/api/dkim", dict(body, selector="other"), admin(v015))
    refused = json.loads(answer)
    assert status == 200 and refused["error"] == "fieldAlreadyExists"
    # dkim.rs 159-170: the value it echoes is the existing private key itself.
    assert refused["field"] == "signature.rsa-example.test.private-key"
    assert refused["value"].startswith("-----BEGIN RSA PRIVATE KEY-----")


def test_015_a_missing_dkim_id_is_a_404_problem_and_a_malformed_post_a_400(v015):
    status, headers, body = raw(v015, "GET", "/api/dkim/rsa-nope.test", headers=admin(v015))
    assert status == 404 and headers["content-type"] == ["application/problem+json"]
    assert json.loads(body)["title"] == "Not Found"
    status, headers, body = raw(v015, "POST", "/api/dkim", {"domain": "example.test"}, admin(v015))
    assert status == 400 and json.loads(body)["detail"] == "missing field `algorithm`"
    status, _, _ = raw(v015, "POST", "/api/dkim", {"algorithm": "Dsa", "domain": "example.test"}, admin(v015))
    assert status == 400


def test_015_settings_keys_read_auth_dkim_sign_by_key_and_prefix(v015):
    _, _, body = raw(v015, "GET", "/api/settings/keys?keys=auth.dkim.sign&prefixes=auth.dkim.sign",
                     headers=admin(v015))  # fmt: skip
    assert json.loads(body) == {"data": {}}  # not set: the built-in rule applies
    v015.dkim_sign = {"auth.dkim.sign.0000.if": "is_local_domain('*', sender_domain)",
                      "auth.dkim.sign.0000.then": "'mykey'", "auth.dkim.sign.0001.else": "false"}  # fmt: skip
    _, _, body = raw(v015, "GET", "/api/settings/keys?keys=auth.dkim.sign&prefixes=auth.dkim.sign",
                     headers=admin(v015))  # fmt: skip
    assert json.loads(body)["data"] == v015.dkim_sign


def test_015_a_signature_under_a_hand_made_id(v015):
    v015.add_dkim("example.test", "rsa", selector="legacy", signature_id="example-rsa")
    _, _, group = raw(v015, "GET", "/api/settings/group?prefix=signature&suffix=algorithm", headers=admin(v015))
    (item,) = json.loads(group)["data"]["items"]
    assert item["_id"] == "example-rsa" and item["selector"] == "legacy"
    assert item["private-key"].startswith("-----BEGIN")  # the group listing returns it in clear


def test_015_settings_filter_is_a_substring_match(v015):
    v015.add_domain("example.test.au")
    v015.add_dkim("example.test", "rsa")
    v015.add_dkim("example.test.au", "rsa")
    _, _, body = raw(v015, "GET", "/api/settings/group?prefix=signature&suffix=algorithm&filter=example.test",
                     headers=admin(v015))  # fmt: skip
    ids = sorted(i["_id"] for i in json.loads(body)["data"]["items"])
    assert ids == ["rsa-example.test", "rsa-example.test.au"]  # the #1270 trap


def test_015_dns_records_are_a_list_of_fqdn_records(v015):
    v015.add_dkim("example.test", "rsa", selector="202601r")
    status, _, body = raw(v015, "GET", "/api/dns/records/example.test", headers=admin(v015))
    records = json.loads(body)["data"]
    assert status == 200 and all(set(r) == {"type", "name", "content"} for r in records)
    assert {"type": "MX", "name": "example.test.", "content": "10 mail.example.test."} in records
    dkim = next(r for r in records if r["name"] == "202601r._domainkey.example.test.")
    assert dkim["content"].startswith("v=DKIM1; k=rsa; h=sha256; p=") and '"' not in dkim["content"]
    assert {"type": "TXT", "name": "example.test.", "content": "v=spf1 mx ra=postmaster -all"} in records
    # build_dns_records does not look the domain up: an unknown domain gets records all the same.
    status, _, body = raw(v015, "GET", "/api/dns/records/nope.test", headers=admin(v015))
    assert (
        status == 200
        and {"type": "MX", "name": "nope.test.", "content": "10 mail.example.test."} in json.loads(body)["data"]
    )


def test_015_has_no_api_account(v015):
    # Section 0: GET /api/account answers 200 only on 0.16 and later (the probe relies on it).
    assert raw(v015, "GET", "/api/account", headers=admin(v015))[0] == 404

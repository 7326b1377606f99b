"""The official Auth0 Python SDK's Management client (`auth0.management.ManagementClient`, from
`auth0-python`), unchanged, against a real Tessera process's Management API (`/api/v2`).

The client is generated from Auth0's API definition and parses every answer into pydantic
models, so a call that returns here returned Auth0's shape. The Tessera process, the SMTP server
(aiosmtpd, writing a Maildir) and the helpers come from test_auth0_python.py.

How the SDK reaches the server: ManagementClient always builds `https://{domain}/api/v2` URLs,
and Tessera here serves plain HTTP on a loopback port. The client is given, through its own
`httpx_client=` parameter, an httpx client whose transport sends each request to the same host,
port, path, query, headers and body over `http` instead of `https`. That is routing only: no
request or answer body is read or changed. The token comes from the SDK's own
`GetToken.client_credentials(audience="<issuer>api/v2/")` (protocol "http", as in
test_auth0_python.py). Against a Tessera served over HTTPS, `ManagementClient(domain=<host>,
token=...)` needs nothing else.

Signing keys: the SDK's `SigningKeys`, `RotateSigningKeysResponseContent` and
`RevokedSigningKeysResponseContent` models require each key's X.509 certificate (`cert`, PEM)
and, for the list, its `fingerprint` and `thumbprint`. Tessera makes a self-signed certificate
for every key it generates, publishes it in the JWKS (`x5c`, `x5t`) and gives it in these
answers, so they parse like the rest.

Run:  python3 -m pytest -q tests/sdk/test_management.py
Needs: tests/sdk/requirements.txt installed, and a built binary at <repo>/target/debug/tessera
(or the path in TESSERA_BIN).
"""

from __future__ import annotations

import json
import re
import urllib.request

import httpx
import pytest
from auth0.authentication import GetToken, Passwordless
from auth0.authentication.exceptions import Auth0Error
from auth0.management import ManagementClient
from auth0.management.core.api_error import ApiError
from auth0.management.errors import BadRequestError, NotFoundError, UnauthorizedError
from auth0.management.types import (
    Client,
    ConnectionForList,
    CreateClientResponseContent,
    CreateUserResponseContent,
    GetClientResponseContent,
    GetConnectionResponseContent,
    GetUserResponseContent,
    Log,
    RotateClientSecretResponseContent,
    UpdateClientResponseContent,
    UpdateConnectionResponseContent,
    UpdateUserResponseContent,
    UserResponseSchema,
)

from test_auth0_python import (  # noqa: F401  (smtp is a fixture used by name)
    CLIENT_ID,
    CLIENT_SECRET,
    body_text,
    mail_files,
    running_tessera,
    smtp,
    wait_for_mail,
)

ADMIN_ID = "admin-tool"
ADMIN_SECRET = "admin-tool-secret-" + "fedcba9876543210fedcba9876543210"
SCOPES = [
    "read:users", "create:users", "update:users", "delete:users", "read:logs",
    "read:clients", "create:clients", "update:clients", "delete:clients",
    "read:connections", "update:connections",
    "read:signing_keys", "create:signing_keys", "update:signing_keys",
]


@pytest.fixture(scope="module")
def tessera(smtp, tmp_path_factory):
    """Tessera with the Acme application and an administration tool granted every scope."""
    admin = f'''
[[applications]]
name = "Admin tool"
client_id = "{ADMIN_ID}"
client_secret = "{ADMIN_SECRET}"
app_type = "regular_web"
management_scopes = {json.dumps(SCOPES)}
'''
    with running_tessera(tmp_path_factory.mktemp("tessera"), smtp["port"], admin) as t:
        yield t


class _PlainHttpToLoopback(httpx.HTTPTransport):
    """Routing only: the SDK's https://127.0.0.1:<port>/… request goes out as http://…, with
    its method, headers and body untouched."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == "127.0.0.1", request.url
        request.url = request.url.copy_with(scheme="http")
        return super().handle_request(request)


def management_token(t) -> str:
    """SDK: GetToken.client_credentials, for the Management API's audience."""
    tokens = GetToken(t["domain"], ADMIN_ID, client_secret=ADMIN_SECRET, protocol="http") \
        .client_credentials(audience=f"{t['issuer']}api/v2/")
    assert tokens["token_type"] == "Bearer", tokens
    assert set(tokens["scope"].split()) == set(SCOPES), tokens
    return tokens["access_token"]


def management_client(t, token: str) -> ManagementClient:
    return ManagementClient(
        domain=t["domain"], token=token,
        httpx_client=httpx.Client(transport=_PlainHttpToLoopback(), timeout=30),
    )


@pytest.fixture
def mgmt(tessera) -> ManagementClient:
    # A fresh token for each test: the signing-key test revokes the key older tokens carry.
    return management_client(tessera, management_token(tessera))


def start_code(t, smtp, client_id: str, secret: str, address: str) -> tuple[str, object]:
    """SDK: Passwordless.email(send="code") for `client_id`; the code, read from the mail's
    text, and the mail."""
    before = mail_files(smtp["maildir"])
    Passwordless(t["domain"], client_id, client_secret=secret, protocol="http") \
        .email(email=address, send="code")
    msg = wait_for_mail(smtp["maildir"], before, address.lower())
    m = re.search(r"\b(\d{6})\b", body_text(msg))
    assert m, f"the mail should carry a 6-digit code: {body_text(msg)!r}"
    return m.group(1), msg


def jwks_keys(t) -> list[dict]:
    with urllib.request.urlopen(f"{t['issuer']}.well-known/jwks.json", timeout=5) as r:
        return json.load(r)["keys"]


def jwks_kids(t) -> set[str]:
    return {k["kid"] for k in jwks_keys(t)}


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_application_create_update_rotate_delete(tessera, smtp, mgmt):
    t = tessera
    created = mgmt.clients.create(
        name="Billing", app_type="regular_web", callbacks=["https://billing.test/callback"],
    )
    assert isinstance(created, CreateClientResponseContent)
    assert created.name == "Billing" and created.app_type == "regular_web", created
    assert created.callbacks == ["https://billing.test/callback"], created
    assert created.client_secret, "a regular_web application gets its secret, once"
    cid, first_secret = created.client_id, created.client_secret

    got = mgmt.clients.get(cid)
    assert isinstance(got, GetClientResponseContent)
    assert got.client_secret is None, "Tessera keeps only a digest of the secret"
    assert got.callbacks == ["https://billing.test/callback"]
    listed = list(mgmt.clients.list(per_page=100))
    assert all(isinstance(c, Client) for c in listed)
    assert {cid, CLIENT_ID, ADMIN_ID} <= {c.client_id for c in listed}

    updated = mgmt.clients.update(
        cid, callbacks=["https://billing.test/callback", "https://billing.test/cb2"],
    )
    assert isinstance(updated, UpdateClientResponseContent)
    assert updated.callbacks == ["https://billing.test/callback", "https://billing.test/cb2"]
    assert mgmt.clients.get(cid).callbacks == updated.callbacks

    rotated = mgmt.clients.rotate_secret(cid)
    assert isinstance(rotated, RotateClientSecretResponseContent)
    new_secret = rotated.client_secret
    assert new_secret and new_secret != first_secret, rotated

    # The new secret starts a sign-in; the old one is refused at once.
    code, _ = start_code(t, smtp, cid, new_secret, "billing.user@example.org")
    assert re.fullmatch(r"\d{6}", code)
    with pytest.raises(Auth0Error) as err:
        Passwordless(t["domain"], cid, client_secret=first_secret, protocol="http") \
            .email(email="billing.user@example.org", send="code")
    assert (err.value.status_code, err.value.error_code) == (401, "access_denied"), err.value

    assert mgmt.clients.delete(cid) is None
    with pytest.raises(NotFoundError) as gone:
        mgmt.clients.get(cid)
    assert gone.value.body["statusCode"] == 404, gone.value.body
    assert gone.value.body["errorCode"] == "inexistent_client", gone.value.body
    with pytest.raises(Auth0Error) as err:
        Passwordless(t["domain"], cid, client_secret=new_secret, protocol="http") \
            .email(email="billing.user@example.org", send="code")
    assert err.value.status_code == 401, err.value


def test_email_template_from_the_connection_is_used(tessera, smtp, mgmt):
    t = tessera
    listed = list(mgmt.connections.list())
    assert all(isinstance(c, ConnectionForList) for c in listed)
    assert [c.strategy for c in listed if c.name == "email"] == ["email"], listed
    conn = mgmt.connections.get("con_email")
    assert isinstance(conn, GetConnectionResponseContent)
    assert conn.id == "con_email" and conn.strategy == "email", conn
    assert CLIENT_ID in (conn.enabled_clients or []), conn

    template = {
        "from": "Acme Sign-in <login@acme.test>",
        "subject": "Acme code {{ code }}",
        "body": "<p>Hello from Acme. Your code for {{ application.name }}: <b>{{ code }}</b></p>",
        "syntax": "liquid",
    }
    updated = mgmt.connections.update("con_email", options={"email": template})
    assert isinstance(updated, UpdateConnectionResponseContent)
    assert updated.options["email"] == template, updated.options
    assert mgmt.connections.get("con_email").options["email"] == template

    code, msg = start_code(t, smtp, CLIENT_ID, CLIENT_SECRET, "template.reader@example.org")
    assert str(msg["Subject"]) == f"Acme code {code}", msg["Subject"]
    assert "Hello from Acme. Your code for Acme:" in body_text(msg), body_text(msg)
    assert "login@acme.test" in str(msg["From"]), msg["From"]

    # `null` goes back to the built-in, translated email.
    restored = mgmt.connections.update("con_email", options={"email": None})
    assert "email" not in restored.options, restored.options
    _, msg = start_code(t, smtp, CLIENT_ID, CLIENT_SECRET, "template.reader@example.org")
    assert not str(msg["Subject"]).startswith("Acme code"), msg["Subject"]


def test_user_metadata_block_search_logs_delete(tessera, smtp, mgmt):
    t = tessera
    address = "managed.person@example.org"
    created = mgmt.users.create(
        connection="email", email=address, email_verified=True,
        app_metadata={"plan": "free", "region": "eu"}, user_metadata={"lang": "fr"},
    )
    assert isinstance(created, CreateUserResponseContent)
    uid = created.user_id
    assert re.fullmatch(r"email\|[0-9a-f]{24}", uid), uid
    assert created.email == address and created.email_verified is True, created
    assert created.app_metadata == {"plan": "free", "region": "eu"}, created.app_metadata
    assert created.identities and created.identities[0].connection == "email", created
    assert created.created_at is not None, "created_at parses as a datetime"

    # Metadata is merged key by key; a key set to null goes.
    updated = mgmt.users.update(uid, app_metadata={"plan": "pro", "region": None})
    assert isinstance(updated, UpdateUserResponseContent)
    assert updated.app_metadata == {"plan": "pro"}, updated.app_metadata
    got = mgmt.users.get(uid)
    assert isinstance(got, GetUserResponseContent)
    assert got.app_metadata == {"plan": "pro"} and got.user_metadata == {"lang": "fr"}, got

    found = list(mgmt.users.list(q="managed.person", per_page=10))
    assert all(isinstance(u, UserResponseSchema) for u in found)
    assert [u.user_id for u in found] == [uid], found
    page = mgmt.users.list(q="managed.person", per_page=10)
    assert (page.response.total, page.response.start, page.response.length) == (1, 0, 1)
    by_email = mgmt.users.list_users_by_email(email=address)
    assert [u.user_id for u in by_email] == [uid], by_email

    # A code sent before the block cannot be used after it.
    code, _ = start_code(t, smtp, CLIENT_ID, CLIENT_SECRET, address)
    assert mgmt.users.update(uid, blocked=True).blocked is True
    with pytest.raises(Auth0Error) as err:
        GetToken(t["domain"], CLIENT_ID, client_secret=CLIENT_SECRET, protocol="http") \
            .passwordless_login(username=address, otp=code, realm="email",
                                scope="openid email", audience=None)
    assert (err.value.status_code, err.value.error_code, err.value.message) == (
        401, "unauthorized", "user is blocked"
    ), err.value

    # The audit log, by type and user (Auth0's search syntax, as the SDK sends it).
    changes = list(mgmt.logs.list(search=f'type:sapi AND user_id:"{uid}"', per_page=10))
    assert all(isinstance(e, Log) for e in changes)
    assert [e.description for e in changes] == [
        "Management API: user blocked",
        "Management API: user metadata updated",
        "Management API: user created",
    ], [e.description for e in changes]
    assert {e.client_id for e in changes} == {ADMIN_ID}
    failures = list(mgmt.logs.list(search=f"type:f client_id:{CLIENT_ID}"))
    assert [e.description for e in failures] == ["blocked user"], failures

    assert mgmt.users.delete(uid) is None
    with pytest.raises(NotFoundError) as gone:
        mgmt.users.get(uid)
    assert (gone.value.body["statusCode"], gone.value.body["errorCode"]) == (
        404, "inexistent_user"
    ), gone.value.body
    assert mgmt.users.list_users_by_email(email=address) == []


def test_logs_pages_filter_and_totals(tessera, mgmt):
    # Enough `sapi` events for several pages, whatever ran before.
    for n in range(5):
        mgmt.clients.delete(mgmt.clients.create(name=f"Temporary {n}", app_type="spa").client_id)
    first = mgmt.logs.list(search="type:sapi", per_page=3)
    assert first.response.start == 0 and first.response.limit == 3, first.response
    assert first.response.length == 3 and first.response.total >= 10, first.response
    every = list(mgmt.logs.list(search="type:sapi", per_page=3))
    assert len(every) == first.response.total
    assert {e.type for e in every} == {"sapi"}
    assert len({e.log_id for e in every}) == len(every), "pages do not overlap"
    assert [e.log_id for e in every[:3]] == [e.log_id for e in first.items]
    dates = [e.date for e in every]
    assert dates == sorted(dates, reverse=True), "newest first"


def test_errors_surface_as_the_sdk_error_types(tessera, mgmt):
    with pytest.raises(BadRequestError) as bad:
        mgmt.clients.create(name="Bad", app_type="regular_web",
                            callbacks=["https://bad.test/cb#fragment"])
    body = bad.value.body
    assert (body["statusCode"], body["error"], body["errorCode"]) == (
        400, "Bad Request", "invalid_body"
    ), body
    assert "fragment" in body["message"], body
    assert "Bad" not in {c.name for c in mgmt.clients.list(per_page=100)}, "nothing changed"

    uid = mgmt.users.create(connection="email", email="fields@example.org").user_id
    with pytest.raises(BadRequestError) as bad:
        mgmt.users.update(uid, given_name="Nope")
    assert (bad.value.body["statusCode"], bad.value.body["errorCode"]) == (400, "invalid_body")
    assert "given_name" in bad.value.body["message"], bad.value.body
    mgmt.users.delete(uid)

    with pytest.raises(BadRequestError) as bad:
        mgmt.logs.list(search="application:billing")
    assert bad.value.body["errorCode"] == "invalid_query_string", bad.value.body
    assert "type, user_id and client_id" in bad.value.body["message"], bad.value.body

    with pytest.raises(UnauthorizedError) as unauth:
        management_client(tessera, "not-a-token").users.get("email|000000000000000000000000")
    assert (unauth.value.body["statusCode"], unauth.value.body["errorCode"]) == (
        401, "invalid_token"
    ), unauth.value.body


def test_signing_keys_list_rotate_and_revoke(tessera, mgmt):
    """keys.signing.list/rotate/revoke parse into the SDK's models, with each key's certificate,
    and act: the rotated key is published, the revoked one leaves the JWKS."""
    t = tessera
    listed = mgmt.keys.signing.list()
    assert listed, listed
    for k in listed:
        assert k.cert.startswith("-----BEGIN CERTIFICATE-----"), k
        assert re.fullmatch(r"[0-9a-f]{40}", k.thumbprint), k
        assert k.fingerprint == ":".join(
            k.thumbprint[i : i + 2].upper() for i in range(0, 40, 2)
        ), k
    [old] = [k.kid for k in listed if k.current]
    jwks = jwks_keys(t)
    assert all(k.get("x5c") and k.get("x5t") for k in jwks), jwks

    rotated = mgmt.keys.signing.rotate()
    new = rotated.kid
    assert rotated.cert.startswith("-----BEGIN CERTIFICATE-----")
    assert new != old and {old, new} <= jwks_kids(t)

    # The current key cannot be revoked. Auth0's definition lists no 400 for this call, so the
    # SDK raises its base ApiError, with Tessera's body.
    with pytest.raises(ApiError) as bad:
        mgmt.keys.signing.revoke(new)
    assert bad.value.status_code == 400, bad.value
    assert bad.value.body["statusCode"] == 400, bad.value.body
    assert "rotate first" in bad.value.body["message"], bad.value.body

    # `mgmt`'s token was signed by the old key; take a new one before revoking it.
    fresh = management_client(t, management_token(t))
    revoked = fresh.keys.signing.revoke(old)
    assert revoked.kid == old and revoked.cert.startswith("-----BEGIN CERTIFICATE-----")
    assert old not in jwks_kids(t) and new in jwks_kids(t)

    # A token the revoked key signed stops working at once.
    with pytest.raises(UnauthorizedError):
        mgmt.users.list_users_by_email(email="nobody@example.org")
    assert fresh.users.list_users_by_email(email="nobody@example.org") == []

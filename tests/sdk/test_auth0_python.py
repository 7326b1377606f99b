"""The official Auth0 Python SDK (`auth0-python`), unchanged, against a real Tessera process.

Only the domain differs from a real Auth0 tenant: every SDK class gets "127.0.0.1:<port>" and
protocol="http". Mail goes over real SMTP to a real aiosmtpd process, which writes a Maildir; the
code is read from there, as a person would read it from their inbox.

Run:  python3 -m pytest -q tests/sdk
Needs: tests/sdk/requirements.txt installed, and a built binary at <repo>/target/debug/tessera
(or the path in TESSERA_BIN).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import html
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from auth0.authentication import GetToken, Passwordless, Users
from auth0.authentication.token_verifier import AsymmetricSignatureVerifier, TokenVerifier

try:  # auth0-python 5 and later
    from auth0.authentication.exceptions import Auth0Error
except ImportError:  # auth0-python 4.x
    from auth0.exceptions import Auth0Error

REPO = Path(__file__).resolve().parents[2]
TESSERA_BIN = Path(os.environ.get("TESSERA_BIN", REPO / "target" / "debug" / "tessera"))

CLIENT_ID = "acme-web"
CLIENT_SECRET = "acme-web-secret-" + "0123456789abcdef0123456789abcdef"
API = "https://api.acme.test/"
SCOPE = "openid profile email offline_access"

STARTUP_DEADLINE = 30.0
MAIL_DEADLINE = 15.0


# --------------------------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as e:
        return f"<no log: {e}>"


def stop(proc: subprocess.Popen) -> None:
    """Ends one process that this module started (its own process group), by its id."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def child_env() -> dict[str, str]:
    # Tessera reads every TESSERA_* variable as a configuration key (and stops on an unknown
    # one), so TESSERA_BIN and any other TESSERA_* in the caller's environment must not reach it.
    return {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}


@pytest.fixture(scope="module")
def smtp(tmp_path_factory):
    """A real SMTP server (aiosmtpd) writing every accepted message into a Maildir."""
    base = tmp_path_factory.mktemp("smtp")
    maildir = base / "maildir"
    log = base / "aiosmtpd.log"
    port = free_port()
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Mailbox",
             str(maildir), "-l", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not port_accepts(port):
            if proc.poll() is not None:
                pytest.fail(f"aiosmtpd exited with {proc.returncode}:\n{read_log(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"aiosmtpd did not listen on {port} in time:\n{read_log(log)}")
            time.sleep(0.1)
        yield {"port": port, "maildir": maildir}
    finally:
        stop(proc)


@contextlib.contextmanager
def running_tessera(base: Path, smtp_port: int, extra_config: str = ""):
    """A real Tessera process in `base`, configured for the SMTP server on `smtp_port`, with the
    Acme application and `extra_config` (more TOML) in its file; stopped on exit."""
    if not TESSERA_BIN.is_file():
        pytest.fail(f"no Tessera binary at {TESSERA_BIN} (build it, or set TESSERA_BIN)")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}/"
    config = base / "tessera.toml"
    config.write_text(f'''\
issuer = "{issuer}"
listen = "127.0.0.1:{port}"
data_dir = "{base / 'data'}"

[email]
from = "Acme Login <login@acme.test>"
smtp_url = "smtp://127.0.0.1:{smtp_port}?tls=none"

[[apis]]
identifier = "{API}"
allow_offline_access = true

[[applications]]
name = "Acme"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
app_type = "regular_web"
callbacks = ["https://acme.test/callback"]
''' + extra_config)
    log = base / "tessera.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [str(TESSERA_BIN), "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            env=child_env(), cwd=base, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        last = "no answer yet"
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tessera exited with {proc.returncode}:\n{read_log(log)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
                    last = f"status {r.status}"
            except urllib.error.HTTPError as e:
                last = f"status {e.code}"
            except OSError as e:
                last = repr(e)
            if time.monotonic() > deadline:
                pytest.fail(f"GET /health not 200 within {STARTUP_DEADLINE}s ({last}):\n"
                            f"{read_log(log)}")
            time.sleep(0.2)
        yield {"domain": f"127.0.0.1:{port}", "issuer": issuer, "log": log}
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def tessera(smtp, tmp_path_factory):
    """A real Tessera process, configured for the SMTP server above."""
    with running_tessera(tmp_path_factory.mktemp("tessera"), smtp["port"]) as t:
        yield t


# --------------------------------------------------------------------------------------------
# SDK objects, exactly as an application would build them (domain and protocol aside)
# --------------------------------------------------------------------------------------------


def passwordless(t, secret: str = CLIENT_SECRET) -> Passwordless:
    return Passwordless(t["domain"], CLIENT_ID, client_secret=secret, protocol="http")


def get_token(t, secret: str = CLIENT_SECRET) -> GetToken:
    return GetToken(t["domain"], CLIENT_ID, client_secret=secret, protocol="http")


def users(t) -> Users:
    return Users(t["domain"], protocol="http")


def id_token_verifier(t) -> TokenVerifier:
    return TokenVerifier(
        signature_verifier=AsymmetricSignatureVerifier(f"{t['issuer']}.well-known/jwks.json"),
        issuer=t["issuer"],
        audience=CLIENT_ID,
    )


# --------------------------------------------------------------------------------------------
# Mail
# --------------------------------------------------------------------------------------------


def mail_files(maildir: Path) -> set[Path]:
    found: set[Path] = set()
    for sub in ("new", "cur"):
        d = maildir / sub
        if d.is_dir():
            found.update(p for p in d.iterdir() if p.is_file())
    return found


def wait_for_mail(maildir: Path, before: set[Path], rcpt: str) -> email.message.EmailMessage:
    """The first message that arrived after `before` was taken, for envelope recipient `rcpt`."""
    deadline = time.monotonic() + MAIL_DEADLINE
    seen: list[str] = []
    while time.monotonic() < deadline:
        for path in sorted(mail_files(maildir) - before):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            rcpts = [r.strip() for r in str(msg.get("X-RcptTo", "")).split(",")]
            if rcpt in rcpts:
                return msg
            seen.append(str(msg.get("X-RcptTo")))
        time.sleep(0.1)
    pytest.fail(f"no mail for {rcpt!r} within {MAIL_DEADLINE}s (other recipients: {seen})")


def body_text(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


def send_code(t, smtp, address: str) -> tuple[dict, str, email.message.EmailMessage]:
    """SDK: Passwordless.email(send="code"); returns the response, the code and the mail."""
    before = mail_files(smtp["maildir"])
    resp = passwordless(t).email(email=address, send="code")
    msg = wait_for_mail(smtp["maildir"], before, address.lower())
    subject = str(msg["Subject"])
    m = re.match(r"(\d{6})\b", subject)
    assert m, f"the Subject should start with the 6-digit code: {subject!r}"
    code = m.group(1)
    assert code in body_text(msg), f"the code {code} should also be in the body"
    return resp, code, msg


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_email_code_login_userinfo_and_refresh(tessera, smtp):
    t = tessera
    address = "Grace.Hopper@Example.org"

    resp, code, msg = send_code(t, smtp, address)
    # The mail went to the lower-cased address (asserted in send_code by its envelope), and
    # the To header names it too.
    assert "grace.hopper@example.org" in str(msg["To"]).lower()
    assert isinstance(resp, dict), resp
    assert resp.get("email") == "grace.hopper@example.org", resp

    # The user types the address as before, mixed case.
    tokens = get_token(t).passwordless_login(
        username=address, otp=code, realm="email", scope=SCOPE, audience=None
    )
    assert tokens["token_type"] == "Bearer", tokens
    assert isinstance(tokens.get("expires_in"), int), tokens
    assert tokens.get("access_token"), tokens
    assert tokens.get("refresh_token"), f"offline_access should give a refresh_token: {tokens}"

    claims = id_token_verifier(t).verify(tokens["id_token"])
    assert claims["iss"] == t["issuer"]
    assert re.fullmatch(r"email\|[0-9a-f]{24}", claims["sub"]), claims["sub"]
    assert claims["email"] == "grace.hopper@example.org", claims
    assert claims["email_verified"] is True, claims
    assert "nonce" not in claims, claims

    info = users(t).userinfo(tokens["access_token"])
    assert info["sub"] == claims["sub"], info
    assert info["email"] == "grace.hopper@example.org", info
    assert info["email_verified"] is True, info

    # The code is single-use.
    with pytest.raises(Auth0Error) as err:
        get_token(t).passwordless_login(
            username=address, otp=code, realm="email", scope=SCOPE, audience=None
        )
    assert err.value.status_code == 403
    assert err.value.error_code == "invalid_grant"

    refreshed = get_token(t).refresh_token(tokens["refresh_token"])
    assert refreshed.get("access_token"), refreshed
    assert refreshed["token_type"] == "Bearer", refreshed
    if "id_token" in refreshed:
        assert id_token_verifier(t).verify(refreshed["id_token"])["sub"] == claims["sub"]
    info2 = users(t).userinfo(refreshed["access_token"])
    assert info2["sub"] == claims["sub"], info2
    assert info2["email"] == "grace.hopper@example.org", info2


def test_audience_gives_jwt_access_token(tessera, smtp):
    t = tessera
    address = "Grace.Hopper@Example.org"
    _, code, _ = send_code(t, smtp, address)

    tokens = get_token(t).passwordless_login(
        username=address, otp=code, realm="email", scope=SCOPE, audience=API
    )
    claims = id_token_verifier(t).verify(tokens["id_token"])

    access = tokens["access_token"]
    assert access.count(".") == 2, f"with an audience the access token is a JWT: {access!r}"
    # The SDK's own JWKS-backed verifier checks its RS256 signature and returns the claims.
    at = AsymmetricSignatureVerifier(f"{t['issuer']}.well-known/jwks.json").verify_signature(access)
    assert at["iss"] == t["issuer"], at
    assert at["sub"] == claims["sub"], at
    aud = at["aud"] if isinstance(at["aud"], list) else [at["aud"]]
    assert API in aud, at
    assert f"{t['issuer']}userinfo" in aud, f"openid scope: aud should include /userinfo: {at}"
    assert at.get("azp") == CLIENT_ID, at
    assert isinstance(at.get("iat"), int) and isinstance(at.get("exp"), int), at
    assert "openid" in at.get("scope", "").split(), at

    info = users(t).userinfo(access)
    assert info["sub"] == claims["sub"], info
    assert info["email"] == "grace.hopper@example.org", info


def test_wrong_code_is_403_invalid_grant(tessera, smtp):
    t = tessera
    address = "Ada.Lovelace@Example.org"
    _, code, _ = send_code(t, smtp, address)

    with pytest.raises(Auth0Error) as err:
        get_token(t).passwordless_login(
            username=address, otp=other_code(code), realm="email", scope=SCOPE, audience=None
        )
    assert (err.value.status_code, err.value.error_code, err.value.message) == (
        403, "invalid_grant", "Wrong email or verification code."
    )

    # One failed attempt (of three allowed) leaves the real code usable.
    tokens = get_token(t).passwordless_login(
        username=address, otp=code, realm="email", scope=SCOPE, audience=None
    )
    assert id_token_verifier(t).verify(tokens["id_token"])["email"] == "ada.lovelace@example.org"


def test_bad_email_at_start_is_400_bad_email(tessera):
    with pytest.raises(Auth0Error) as err:
        passwordless(tessera).email(email="not-an-email", send="code")
    assert err.value.status_code == 400, err.value
    assert err.value.error_code == "bad.email", err.value
    assert err.value.message, err.value


def test_wrong_client_secret_at_token_is_401_access_denied(tessera):
    wrong = "x" * 48
    with pytest.raises(Auth0Error) as err:
        get_token(tessera, secret=wrong).passwordless_login(
            username="grace.hopper@example.org", otp="123456", realm="email",
            scope=SCOPE, audience=None,
        )
    assert (err.value.status_code, err.value.error_code, err.value.message) == (
        401, "access_denied", "Unauthorized"
    )


def test_wrong_client_secret_at_start_is_401_access_denied(tessera, smtp):
    wrong = "x" * 48
    before = mail_files(smtp["maildir"])
    with pytest.raises(Auth0Error) as err:
        passwordless(tessera, secret=wrong).email(email="Mallory@Example.org", send="code")
    assert (err.value.status_code, err.value.error_code, err.value.message) == (
        401, "access_denied", "Unauthorized"
    )
    time.sleep(1.0)
    assert not any(
        "mallory@example.org" in p.read_text(errors="replace").lower()
        for p in mail_files(smtp["maildir"]) - before
    ), "no mail may be sent for a request with a wrong client secret"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None


def test_magic_link_then_authorization_code_grant(tessera, smtp):
    """A back end sends a magic link with the SDK; the person confirms it in a browser; the back
    end exchanges the code with the SDK's authorization_code grant. Links give no refresh token."""
    t = tessera
    address = "Link.User@Example.org"
    callback = "https://acme.test/callback"
    before = mail_files(smtp["maildir"])
    resp = passwordless(t).email(
        email=address,
        send="link",
        auth_params={"redirect_uri": callback, "response_type": "code", "state": "st-py",
                     "scope": SCOPE},
    )
    assert resp.get("email") == "link.user@example.org", resp
    msg = wait_for_mail(smtp["maildir"], before, "link.user@example.org")
    # The text part shows a link as "label (URL)".
    m = re.search(r"(https?://[^\s()<>]+/passwordless/verify_redirect\?[^\s()<>]+)", body_text(msg))
    assert m, f"the mail should carry the link: {body_text(msg)!r}"
    link = m.group(1)

    opener = urllib.request.build_opener(_NoRedirect)
    # Opened without Tessera's same-device cookie (as a scanner, or another browser, would):
    # a confirmation page, nothing used up.
    try:
        first = opener.open(link, timeout=5)
    except urllib.error.HTTPError as e:
        pytest.fail(f"GET {link} -> {e.code} {e.headers.get('Location')}")
    with first as r:
        page = r.read().decode()
        assert r.status == 200
    assert 'id="confirm"' in page, page
    # The person presses the button: the page's hidden fields (the link's parameters and a
    # CSRF token bound to the cookie the page set), POSTed.
    cookie = "; ".join(
        c.split(";", 1)[0] for c in first.headers.get_all("Set-Cookie") or []
    )
    fields = {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(
            r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page
        )
    }
    assert "csrf" in fields and "verification_code" in fields, fields
    req = urllib.request.Request(
        f"{t['issuer']}passwordless/verify_redirect",
        data=urllib.parse.urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(req, timeout=5)
    assert redirect.value.code == 302
    location = redirect.value.headers["Location"]
    assert location.startswith(callback + "?"), location
    params = dict(urllib.parse.parse_qsl(location.split("?", 1)[1]))
    assert params["state"] == "st-py", params

    tokens = get_token(t).authorization_code(code=params["code"], redirect_uri=callback)
    claims = id_token_verifier(t).verify(tokens["id_token"])
    assert claims["email"] == "link.user@example.org", claims
    assert "refresh_token" not in tokens, f"magic links never give refresh tokens: {tokens}"
    assert users(t).userinfo(tokens["access_token"])["sub"] == claims["sub"]

    # The code is single-use.
    with pytest.raises(Auth0Error) as err:
        get_token(t).authorization_code(code=params["code"], redirect_uri=callback)
    assert (err.value.status_code, err.value.error_code, err.value.message) == (
        403, "invalid_grant", "Invalid authorization code"
    )

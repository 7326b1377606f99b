"""Schemathesis hooks for tests/schemathesis/run.sh.

Random client ids only ever reach "unknown application". So that generated requests also get
past client authentication and into the handlers' deeper steps, generated cases come in three
versions: rewritten to use one of the run's real applications
(`FUZZ_CLIENTS`, a JSON list of {"client_id", "client_secret" or null, "callback", "logout"}),
with its secret in the body or in an HTTP Basic header, or as generated. The rewrite sets the client id and
secret, the callback as redirect_uri, the logout URL as returnTo, a real connection as realm
or connection, a real audience (`FUZZ_AUDIENCES`: the Management API's and a configured
API's), and sometimes no scope or the application's granted Management scopes (`scopes`); every other generated value stays as it was, so malformed input still
gets through. Hypothesis draws the version (flatmap), so a failing case shrinks and replays.

Form bodies are written the way the document's `encoding` says and Tessera reads them
(`style: deepObject`): `authParams[scope]=openid`, not schemathesis' default, which sends a
nested object's keys as repeated `authParams=scope` pairs.

`after_call` counts every request made to the API into `FUZZ_COUNT_FILE`, so run.sh can check
the total.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import urllib.parse
from collections.abc import Mapping

import schemathesis
from hypothesis import strategies as st

CLIENTS = json.loads(os.environ.get("FUZZ_CLIENTS", "[]"))
COUNT_FILE = os.environ.get("FUZZ_COUNT_FILE")
AUDIENCES = json.loads(os.environ.get("FUZZ_AUDIENCES", "[]"))
CONNECTIONS = ["email", "sms"]
# Where client authentication happens (the secret may go in the body or in Basic).
AUTHENTICATED = ("/passwordless/start", "/oauth/token")

_lock = threading.Lock()
_count = 0


def _form_value(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v)


@schemathesis.serializer("application/x-www-form-urlencoded")
def form_deep_object(ctx, value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if not isinstance(value, Mapping):
        return json.dumps(value).encode("utf-8")
    pairs = []
    for key, v in value.items():
        if isinstance(v, Mapping):
            pairs.extend((f"{key}[{k}]", _form_value(x)) for k, x in v.items())
        elif isinstance(v, list):
            pairs.extend((key, _form_value(x)) for x in v)
        else:
            pairs.append((key, _form_value(v)))
    return urllib.parse.urlencode(pairs).encode("utf-8")


def _body(body, client: dict, path: str, connection: str, basic: bool, audience, scope: str):
    if not isinstance(body, dict):
        return body
    out = dict(body)
    if not (basic and path in AUTHENTICATED):
        out["client_id"] = client["client_id"]
    out.pop("client_secret", None)
    # /co/authenticate takes all and only its five properties: no secret there.
    if path in AUTHENTICATED and client["client_secret"] and not basic:
        out["client_secret"] = client["client_secret"]
    for key in ("realm", "connection"):
        if key in out:
            out[key] = connection
    if "redirect_uri" in out:
        out["redirect_uri"] = client["callback"]
    if "audience" in out and audience is not None:
        out["audience"] = audience
    if "scope" in out and scope == "drop":
        del out["scope"]
    elif "scope" in out and scope == "granted" and client.get("scopes"):
        out["scope"] = " ".join(client["scopes"])
    auth = out.get("authParams")
    if isinstance(auth, dict) and "redirect_uri" in auth:
        out["authParams"] = {**auth, "redirect_uri": client["callback"]}
    return out


def _query(query, client: dict, connection: str):
    if not isinstance(query, dict) or "client_id" not in query:
        return query
    out = dict(query)
    out["client_id"] = client["client_id"]
    if "redirect_uri" in out or "response_type" in out:
        out["redirect_uri"] = client["callback"]
    for key in ("returnTo", "post_logout_redirect_uri"):
        if key in out:
            out[key] = client["logout"]
    if "connection" in out:
        out["connection"] = connection
    return out


def _rewrite(case, client: dict, connection: str, basic: bool, audience, scope: str):
    path = case.operation.path
    headers = case.headers.copy() if case.headers else {}
    # A generated Authorization (random Basic credentials) would hide the real ones.
    for name in [h for h in headers if h.lower() == "authorization"]:
        del headers[name]
    if basic and path in AUTHENTICATED and client["client_secret"]:
        raw = f'{client["client_id"]}:{client["client_secret"]}'.encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    query = _query(case.query, client, connection) if case.query else case.query
    derived = case.derive(headers=headers, query=query)
    derived.body = _body(case.body, client, path, connection, basic, audience, scope)
    return derived


@schemathesis.hook
def flatmap_case(context, case):
    if not CLIENTS or case.operation.path in ("/userinfo",):
        return st.just(case)
    # The rewrite comes first: Hypothesis draws (and shrinks towards) the first branch most.
    return st.one_of(
        st.builds(
            lambda c, conn, basic, aud, scope: _rewrite(case, c, conn, basic, aud, scope),
            st.sampled_from(CLIENTS),
            st.sampled_from(CONNECTIONS),
            st.booleans(),
            st.sampled_from([None, *AUDIENCES]),
            st.sampled_from(["keep", "drop", "granted"]),
        ),
        st.just(case),
    )


@schemathesis.hook
def after_call(context, case, response):
    global _count
    if COUNT_FILE is None:
        return
    with _lock:
        _count += 1
        # Written at every call (cheap, and nothing is lost if the run is stopped).
        with open(COUNT_FILE, "w", encoding="ascii") as f:
            f.write(str(_count))

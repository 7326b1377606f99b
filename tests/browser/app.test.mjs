// The example app on its own (no Tessera needed): its pages render, carry a strict CSP and no
// inline script, /login builds a correct /authorize URL with PKCE, and /callback refuses what
// it must refuse.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Stack } from './harness.mjs';

const stack = new Stack('app');
before(() => stack.start({ only: ['app', 'browser'] }), { timeout: 60_000 });
after(() => stack.stop());

async function get(path, init = {}) {
  return fetch(`${stack.app}${path}`, { redirect: 'manual', ...init });
}

function cookieOf(response) {
  const set = response.headers.get('set-cookie') || '';
  const m = /rwa_session=([^;]+)/.exec(set);
  return m && `rwa_session=${m[1]}`;
}

test('the home page offers every way to sign in', { timeout: 60_000 }, () =>
  stack.run('home', async (t) => {
    const page = await t.newPage();
    const response = await page.goto(`${t.app}/`);
    assert.equal(response.status(), 200);
    const csp = response.headers()['content-security-policy'];
    assert.match(csp, /script-src 'self';/);
    assert.equal(await page.getAttribute('a#login', 'href'), '/login');
    for (const href of [
      '/lock?method=code',
      '/lock?method=link',
      '/lock?connection=sms',
      '/custom?send=code',
      '/custom?send=link',
      '/custom?connection=sms',
      '/login?connection=sms',
    ]) {
      assert.equal(await page.locator(`a[href="${href}"]`).count(), 1, href);
    }
    await t.shot(page, 'home');
  }));

test('/login redirects to Tessera /authorize with state, nonce and PKCE S256', { timeout: 60_000 }, async () => {
  const r = await get('/login');
  assert.equal(r.status, 302);
  const cookie = cookieOf(r);
  assert.ok(cookie, 'a session cookie is set');
  assert.match(r.headers.get('set-cookie'), /HttpOnly/);
  assert.match(r.headers.get('set-cookie'), /SameSite=Lax/);
  const location = r.headers.get('location');
  assert.ok(location.startsWith(`${stack.tessera}/authorize?`), location);
  assert.match(location, /scope=openid%20profile%20email%20phone&/);
  const q = new URL(location).searchParams;
  assert.equal(q.get('connection'), null, 'no connection: the hosted page shows every form');
  assert.equal(q.get('response_type'), 'code');
  assert.equal(q.get('client_id'), 'example-rwa');
  assert.equal(q.get('redirect_uri'), `${stack.app}/callback`);
  assert.equal(q.get('code_challenge_method'), 'S256');
  assert.match(q.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/);
  assert.ok(q.get('state').length >= 32 && q.get('nonce').length >= 32);
  // A second sign-in in the same session gets new values and keeps the session.
  const again = await get('/login', { headers: { cookie } });
  assert.equal(cookieOf(again), null, 'no new session');
  const q2 = new URL(again.headers.get('location')).searchParams;
  assert.notEqual(q2.get('state'), q.get('state'));
  assert.notEqual(q2.get('code_challenge'), q.get('code_challenge'));
});

test('/login?connection=sms or email goes on to /authorize; other connections are refused', { timeout: 60_000 }, async () => {
  for (const connection of ['sms', 'email']) {
    const r = await get(`/login?connection=${connection}`);
    assert.equal(r.status, 302, connection);
    const q = new URL(r.headers.get('location')).searchParams;
    assert.equal(q.get('connection'), connection);
    assert.equal(q.get('scope'), 'openid profile email phone');
    assert.equal(q.get('code_challenge_method'), 'S256');
  }
  for (const bad of ['google-oauth2', 'SMS', '']) {
    const r = await get(`/login?connection=${encodeURIComponent(bad)}`);
    assert.equal(r.status, 400, `connection=${bad}`);
    assert.equal(cookieOf(r), null, 'a refused sign-in starts no session');
    assert.match(await r.text(), /connection is email or sms/);
  }
});

test('/lock?connection=sms is Lock with codes by text message; links by text are refused', { timeout: 60_000 }, async () => {
  const r = await get('/lock?connection=sms');
  assert.equal(r.status, 200);
  const html = await r.text();
  const config = JSON.parse(/<script type="application\/json" id="config">([^<]*)<\/script>/.exec(html)[1]);
  assert.equal(config.connection, 'sms');
  assert.equal(config.method, 'code');
  assert.equal(config.scope, 'openid profile email phone');
  assert.match(html, /by text message/);
  assert.equal(JSON.parse(/id="config">([^<]*)</.exec(await (await get('/lock?connection=sms&method=code')).text())[1]).method, 'code');
  for (const bad of ['/lock?connection=sms&method=link', '/lock?connection=phone', '/lock?method=sms']) {
    const refused = await get(bad);
    assert.equal(refused.status, 400, bad);
  }
});

test('/custom?connection=sms is our form with a phone field; links by text are refused', { timeout: 60_000 }, async () => {
  const r = await get('/custom?connection=sms');
  assert.equal(r.status, 200);
  const html = await r.text();
  const config = JSON.parse(/<script type="application\/json" id="config">([^<]*)<\/script>/.exec(html)[1]);
  assert.equal(config.connection, 'sms');
  assert.equal(config.method, 'code');
  assert.equal(config.scope, 'openid profile email phone');
  assert.match(html, /<input id="phone" name="phone" type="tel"/);
  assert.doesNotMatch(html, /id="email"/, 'no email field');
  assert.match(html, /text you a code/);
  assert.equal(JSON.parse(/id="config">([^<]*)</.exec(await (await get('/custom?connection=sms&send=code')).text())[1]).method, 'code');
  for (const [bad, why] of [
    ['/custom?connection=sms&send=link', /the sms connection sends codes only \(send=code\)/],
    ['/custom?connection=phone', /connection is email or sms/],
    ['/custom?send=sms', /send is code or link/],
  ]) {
    const refused = await get(bad);
    assert.equal(refused.status, 400, bad);
    assert.equal(cookieOf(refused), null, `${bad} starts no session`);
    assert.match(await refused.text(), why, bad);
  }
});

for (const [path, template] of [['/lock?method=code', 'lock'], ['/custom?send=link', 'custom']]) {
  test(`${path} carries its config as JSON and a CSP that allows Tessera`, { timeout: 60_000 }, async () => {
    const r = await get(path);
    assert.equal(r.status, 200);
    const csp = r.headers.get('content-security-policy');
    for (const directive of ['script-src', 'connect-src', 'frame-src']) {
      assert.match(csp, new RegExp(`${directive} [^;]*${stack.tessera.replace(/[.:/]/g, '\\$&')}`), directive);
    }
    const html = await r.text();
    for (const [tag] of html.matchAll(/<script\b[^>]*>/g)) {
      assert.match(tag, /\bsrc="|type="application\/json"/, `no inline script: ${tag}`);
    }
    const config = JSON.parse(/<script type="application\/json" id="config">([^<]*)<\/script>/.exec(html)[1]);
    assert.equal(config.clientId, 'example-rwa');
    assert.equal(config.tessera, stack.tessera);
    assert.equal(config.redirectUri, `${stack.app}/callback`);
    assert.equal(config.method, path.endsWith('link') ? 'link' : 'code');
    assert.equal(config.connection, 'email');
    assert.equal(config.scope, 'openid profile email phone');
    assert.ok(config.state && config.nonce);
    assert.match(html, new RegExp(`src="/static/${template}-page.js"`));
  });
}

test('the static scripts and the vendored SDKs are served as JavaScript', { timeout: 60_000 }, async () => {
  for (const path of ['/static/lock-page.js', '/static/custom-page.js', '/vendor/lock.js', '/vendor/auth0.js']) {
    const r = await get(path);
    assert.equal(r.status, 200, path);
    assert.match(r.headers.get('content-type'), /javascript/, path);
    assert.ok((await r.text()).length > 100, path);
  }
  assert.equal((await get('/vendor/other.js')).status, 404);
  assert.equal((await get('/static/nope.js')).status, 404);
});

test('/callback refuses an unknown state and shows Tessera errors', { timeout: 60_000 }, () =>
  stack.run('callback-errors', async (t) => {
    const page = await t.newPage();
    // An error from Tessera is shown, escaped.
    await page.goto(`${t.app}/callback?error=access_denied&error_description=${encodeURIComponent('<b>No</b> way')}&state=x`);
    assert.equal(await page.textContent('#error'), 'access_denied: <b>No</b> way');
    // A code with a state this browser never sent is not exchanged: the first time the app
    // starts a fresh sign-in (to Tessera), the second time within a minute it shows an error.
    const r1 = await get(`/callback?code=abc&state=${crypto.randomBytes(8).toString('hex')}`);
    assert.equal(r1.status, 302);
    assert.equal(r1.headers.get('location'), '/login');
    const cookie = cookieOf(r1);
    const r2 = await get(`/callback?code=abc&state=other`, { headers: { cookie } });
    assert.equal(r2.status, 400);
    assert.match(await r2.text(), /id="error"/);
    // Not signed in: /profile sends you home.
    const r3 = await get('/profile');
    assert.equal(r3.status, 302);
    assert.equal(r3.headers.get('location'), '/');
  }));

test('/logout ends the session and goes to Tessera /v2/logout', { timeout: 60_000 }, async () => {
  const r = await get('/logout');
  assert.equal(r.status, 302);
  const location = new URL(r.headers.get('location'));
  assert.equal(`${location.origin}${location.pathname}`, `${stack.tessera}/v2/logout`);
  assert.equal(location.searchParams.get('client_id'), 'example-rwa');
  assert.equal(location.searchParams.get('returnTo'), `${stack.app}/`);
  assert.match(r.headers.get('set-cookie'), /rwa_session=;.*Max-Age=0/);
});

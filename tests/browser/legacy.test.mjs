// The seeds' older widgets against Tessera serving HTTPS itself (issue 10): Lock Passwordless
// 2.2.3 and auth0.js 7.6.1, unchanged, on the seed pages 000 (email code) and 002 (SMS code),
// changed only in domain and client ID (legacy-harness.mjs serves them). Each flow ends with the
// user signed in and the id_token verified here (RS256 against Tessera's JWKS, iss
// https://localhost:<port>/). Every test records what the widgets sent (wire.json in its
// artifacts folder); the observations are written up in docs/legacy-widgets-observed.md.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { LegacyStack, MODERN_CLIENT_ID, SEED_CLIENT_ID } from './legacy-harness.mjs';
import { testPhone, uniqueEmail } from './harness.mjs';

const stack = new LegacyStack('legacy');
before(() => stack.start(), { timeout: 90_000 });
after(() => stack.stop());

const LOCK = '.auth0-lock';
const EMAIL_INPUT = `${LOCK} input[name="email"]`;
const PHONE_INPUT = `${LOCK} input[name="phoneNumber"]`;
const LOCATION_INPUT = `${LOCK} input[name="location"]`;
const VCODE_INPUT = `${LOCK} input[name="vcode"]`;
const SUBMIT = `${LOCK} button.auth0-lock-submit`;
const LOCK_ERROR = `${LOCK} .auth0-global-grobal-error`; // sic: Lock 2.2.3's class name

const LOCK_V2_CLIENT = { name: 'lock-passwordless.js', version: '2.2.3', lib_version: '6.8.0' };
const AUTH0_V7_CLIENT = { name: 'auth0.js', version: '7.6.1' };

/** Phone numbers: each test its own, so that no test waits for another's text message. */
let phones = 0;
const nextPhone = () => testPhone(phones++);

/** A six-digit code that is not `code`. */
const wrongCode = (code) => String((Number(code) + 1) % 1_000_000).padStart(6, '0');

/** The one request the widget made to `path` (method too): its form body as an object. */
function only(t, path, method) {
  const sent = t.sent(path, method);
  assert.equal(sent.length, 1, `one ${method ?? ''} ${path} request (saw ${sent.length}): ${JSON.stringify(sent)}`);
  return sent[0];
}
const form = (entry) => Object.fromEntries(entry.form ?? []);
const query = (entry) => Object.fromEntries(entry.query ?? []);

/** A screenshot of Lock once its CSS transitions (opening, sliding, error) are over. */
async function lockShot(t, page, name) {
  await page.waitForTimeout(700);
  await t.shot(page, name);
}

/** Lock v2 is opened by the seed's "Login" link (`javascript:login()`). */
async function openLock(t, page, seedPath, input) {
  await page.goto(`${t.app}${seedPath}`);
  await t.shot(page, 'seed-page');
  await page.click('a:has-text("Login")');
  await page.waitForSelector(`${LOCK}.auth0-lock-opened`);
  await page.waitForSelector(input, { state: 'visible' });
  await lockShot(t, page, 'lock-opened');
}

/** Lock v2 in email code mode: the email typed and sent, then the emailed code typed and sent. */
async function lockEmailCode(t, page, seedPath, email, { shotCodeAsked = false } = {}) {
  await openLock(t, page, seedPath, EMAIL_INPUT);
  await page.fill(EMAIL_INPUT, email);
  await page.click(SUBMIT);
  await page.waitForSelector(VCODE_INPUT, { state: 'visible' });
  if (shotCodeAsked) await lockShot(t, page, 'lock-code-asked');
  const code = await stack.codeFor(email);
  await page.fill(VCODE_INPUT, code);
  await page.click(SUBMIT);
  return code;
}

/** The start call of a widget: form-encoded, no secret, with the widget's Auth0-Client. */
function checkStart(t, expected, client) {
  const start = only(t, '/passwordless/start', 'POST');
  assert.match(start.contentType ?? '', /^application\/x-www-form-urlencoded/, 'start is form-encoded');
  assert.deepEqual(form(start), expected, 'the fields of /passwordless/start');
  assert.deepEqual(start.auth0Client, client, 'Auth0-Client');
  assert.equal(start.status, 200, `/passwordless/start answered ${start.status}: ${start.responseBody}`);
  return start;
}

/** The check of the code in redirect mode: /passwordless/verify without client_id. */
function checkVerify(t, expected) {
  const verify = t.sent('/passwordless/verify', 'POST').at(-1);
  assert.ok(verify, 'a POST /passwordless/verify');
  assert.deepEqual(form(verify), expected, 'the fields of /passwordless/verify (no client_id)');
  assert.ok(verify.status >= 200 && verify.status < 210, `/passwordless/verify answered ${verify.status}`);
  assert.ok(verify.responseContentType, '/passwordless/verify has a Content-Type (Lock v2 needs one)');
  return verify;
}

/** The top-level navigation to /passwordless/verify_redirect that follows. */
function checkVerifyRedirect(t, expected) {
  const nav = only(t, '/passwordless/verify_redirect', 'GET');
  const q = query(nav);
  const { auth0Client, ...rest } = q;
  assert.deepEqual(rest, expected, 'the query of /passwordless/verify_redirect');
  assert.ok(auth0Client, 'auth0Client in the query');
  assert.equal(nav.status, 302, `/passwordless/verify_redirect answered ${nav.status}`);
  assert.ok(nav.location?.startsWith(`${t.app}/callback?code=`), `redirected to the callback: ${nav.location}`);
  return nav;
}

/**
 * Redirect mode's three requests for `who` ({ email } or { phone }): the start call (the email
 * connection's with send=code), the check of `code`, and the navigation to verify_redirect.
 */
function checkRedirectFlow(t, who, code, client) {
  const user =
    who.email !== undefined
      ? { connection: 'email', email: who.email }
      : { connection: 'sms', phone_number: who.phone };
  const send = who.email !== undefined ? { send: 'code' } : {};
  checkStart(t, { client_id: SEED_CLIENT_ID, ...user, ...send }, client);
  checkVerify(t, { ...user, verification_code: code });
  checkVerifyRedirect(t, {
    scope: 'openid',
    response_type: 'code',
    sso: 'true',
    ...user,
    verification_code: code,
    client_id: SEED_CLIENT_ID,
    redirect_uri: `${t.app}/callback`,
  });
}

test('Lock Passwordless v2: email code (seed 000, lock.emailcode({callbackURL}))', { timeout: 60_000 }, () =>
  stack.run('lock-v2-email', async (t) => {
    const email = uniqueEmail('lock2-email');
    const page = await t.newPage();
    const code = await lockEmailCode(t, page, '/000/lock', email, { shotCodeAsked: true });
    await t.expectCallback(page, { email });

    checkRedirectFlow(t, { email }, code, LOCK_V2_CLIENT);
    assert.equal(t.sent('/oauth/ro').length, 0, 'no /oauth/ro in redirect mode');
  }));

test('Lock Passwordless v2: SMS code (seed 002, lock.sms({callbackURL}))', { timeout: 60_000 }, () =>
  stack.run('lock-v2-sms', async (t) => {
    const phone = nextPhone();
    const page = await t.newPage();
    await openLock(t, page, '/002/lock', PHONE_INPUT);
    assert.match(await page.inputValue(LOCATION_INPUT), /\+1\b/, 'the country picker starts at +1');
    await page.fill(PHONE_INPUT, phone.slice(2)); // the national number; Lock adds the +1
    await lockShot(t, page, 'lock-phone-typed');
    await page.click(SUBMIT);
    await page.waitForSelector(VCODE_INPUT, { state: 'visible' });
    await lockShot(t, page, 'lock-code-asked');
    const code = await stack.smsCodeFor(phone);
    await page.fill(VCODE_INPUT, code);
    await page.click(SUBMIT);
    await t.expectCallback(page, { phone });

    checkRedirectFlow(t, { phone }, code, LOCK_V2_CLIENT);
  }));

/** auth0.js v7's own-UI pages: type the email or phone, send, type the code, sign in. */
async function ownUi(t, page, seedPath, { email, phone }, getCode) {
  await page.goto(`${t.app}${seedPath}`);
  await t.shot(page, 'seed-page');
  await page.fill(email !== undefined ? 'input.email' : 'input.phone-number', email ?? phone);
  await page.click('#send');
  await page.locator('.enter-code').waitFor({ state: 'visible' });
  await t.shot(page, 'code-asked');
  const code = await getCode();
  await page.fill('input.code', code);
  await t.shot(page, 'code-typed');
  await page.click('#login');
  return code;
}

/** The page without a callbackURL shows the /oauth/ro result; its id_token is verified here. */
async function expectSignedInOnPage(t, page, who, clientId = SEED_CLIENT_ID) {
  await page.locator('#signed-in, #error').first().waitFor({ state: 'visible' });
  await t.shot(page, 'signed-in');
  if (await page.locator('#error').isVisible()) {
    assert.fail(`the page shows an error: ${await page.textContent('#error')}`);
  }
  const idToken = (await page.textContent('#id-token'))?.trim();
  const claims = await stack.verifyIdToken(idToken, { ...who, clientId, userId: true });
  assert.equal((await page.textContent('#user-sub'))?.trim(), claims.sub, 'idTokenPayload.sub on the page');
  assert.ok((await page.textContent('#access-token'))?.trim(), 'an access token');
  t.note(`verified id_token from /oauth/ro: ${JSON.stringify(claims)}`);
  return claims;
}

test('auth0.js v7: email code with a callback URL (seed 000, own UI)', { timeout: 60_000 }, () =>
  stack.run('auth0js-v7-email-callback', async (t) => {
    const email = uniqueEmail('v7-email-cb');
    const page = await t.newPage();
    const code = await ownUi(t, page, '/000/own', { email }, () => stack.codeFor(email));
    await t.expectCallback(page, { email });
    assert.deepEqual(t.dialogs, [], 'the seed page raised no alert');

    checkRedirectFlow(t, { email }, code, AUTH0_V7_CLIENT);
  }));

test('auth0.js v7: email code without a callback URL (/oauth/ro; seed 000, own UI)', { timeout: 60_000 }, () =>
  stack.run('auth0js-v7-email-ro', async (t) => {
    const email = uniqueEmail('v7-email-ro');
    const page = await t.newPage();
    const code = await ownUi(t, page, '/000/own-no-callback', { email }, () => stack.codeFor(email));
    await expectSignedInOnPage(t, page, { email });
    assert.deepEqual(t.dialogs, [], 'the seed page raised no alert');

    checkStart(t, { client_id: SEED_CLIENT_ID, email, connection: 'email', send: 'code' }, AUTH0_V7_CLIENT);
    assert.equal(t.sent('/passwordless/verify').length, 0, 'no /passwordless/verify without a callbackURL');
    const ro = only(t, '/oauth/ro', 'POST');
    assert.deepEqual(form(ro), {
      scope: 'openid',
      response_type: 'code',
      sso: 'false',
      connection: 'email',
      username: email,
      password: code,
      client_id: SEED_CLIENT_ID,
      grant_type: 'password',
    });
    assert.deepEqual(ro.auth0Client, AUTH0_V7_CLIENT);
    assert.equal(ro.status, 200);
    const body = JSON.parse(ro.responseBody);
    assert.equal(body.token_type, 'bearer', 'token_type as Auth0 answered /oauth/ro');
    assert.ok(body.id_token && body.access_token, 'id_token and access_token');
    assert.equal(body.refresh_token, undefined, 'no refresh token without offline_access');
  }));

test('auth0.js v7: SMS code with a callback URL (seed 002, own UI)', { timeout: 60_000 }, () =>
  stack.run('auth0js-v7-sms-callback', async (t) => {
    const phone = nextPhone();
    const page = await t.newPage();
    const code = await ownUi(t, page, '/002/own', { phone }, () => stack.smsCodeFor(phone));
    await t.expectCallback(page, { phone });
    assert.deepEqual(t.dialogs, [], 'the seed page raised no alert');

    checkRedirectFlow(t, { phone }, code, AUTH0_V7_CLIENT);
  }));

test('auth0.js v7: SMS code without a callback URL (/oauth/ro; seed 002, own UI)', { timeout: 60_000 }, () =>
  stack.run('auth0js-v7-sms-ro', async (t) => {
    const phone = nextPhone();
    const page = await t.newPage();
    const code = await ownUi(t, page, '/002/own-no-callback', { phone }, () => stack.smsCodeFor(phone));
    await expectSignedInOnPage(t, page, { phone });
    assert.deepEqual(t.dialogs, [], 'the seed page raised no alert');
    const ro = only(t, '/oauth/ro', 'POST');
    assert.deepEqual(form(ro), {
      scope: 'openid',
      response_type: 'code',
      sso: 'false',
      connection: 'sms',
      username: phone,
      password: code,
      client_id: SEED_CLIENT_ID,
      grant_type: 'password',
    });
  }));

// ------------------------------------------------------------------------------------------
// The widgets' other paths (not in the seeds): Lock without a callbackURL, and forceJSONP
// ------------------------------------------------------------------------------------------

test('Lock Passwordless v2 without a callbackURL: email code through /oauth/ro (not in the seeds)', { timeout: 60_000 }, () =>
  stack.run('lock-v2-email-ro', async (t) => {
    const email = uniqueEmail('lock2-ro');
    const page = await t.newPage();
    const code = await lockEmailCode(t, page, '/000/lock-no-callback', email);
    await expectSignedInOnPage(t, page, { email });
    await lockShot(t, page, 'lock-signed-in');

    const ro = only(t, '/oauth/ro', 'POST');
    assert.deepEqual(form(ro), {
      scope: 'openid',
      response_type: 'token',
      sso: 'false',
      connection: 'email',
      username: email,
      password: code,
      client_id: SEED_CLIENT_ID,
      grant_type: 'password',
    });
    assert.equal(t.sent('/passwordless/verify').length, 0, 'no /passwordless/verify without a callbackURL');
    assert.equal(t.sent('/tokeninfo').length, 0, 'no /tokeninfo: the id_token has a user_id claim');
  }));

/** A JSONP answer: `/**\/ typeof cb === 'function' && cb({...});` as JavaScript; its object. */
function jsonpObject(entry) {
  assert.match(entry.responseContentType ?? '', /javascript/, `a JavaScript MIME type: ${entry.responseContentType}`);
  const cbx = query(entry).cbx;
  assert.match(cbx, /^__auth0jp\d+$/, 'cbx');
  const m = new RegExp(`^/\\*\\*/ typeof ${cbx} === 'function' && ${cbx}\\(([\\s\\S]*)\\);?\\s*$`).exec(entry.responseBody ?? '');
  assert.ok(m, `Auth0's JSONP form calling ${cbx}: ${entry.responseBody}`);
  return JSON.parse(m[1]);
}

test('forceJSONP: auth0.js v7 email code without a callbackURL (JSONP start and /oauth/ro)', { timeout: 60_000 }, () =>
  stack.run('auth0js-v7-jsonp-ro', async (t) => {
    const email = uniqueEmail('v7-jsonp');
    const page = await t.newPage();
    const code = await ownUi(t, page, '/000/own-no-callback?jsonp=1', { email }, () => stack.codeFor(email));
    await expectSignedInOnPage(t, page, { email });

    const start = only(t, '/passwordless/start', 'GET');
    assert.deepEqual(
      Object.fromEntries(Object.entries(query(start)).filter(([k]) => k !== 'auth0Client' && k !== 'cbx')),
      { client_id: SEED_CLIENT_ID, email, connection: 'email', send: 'code' },
    );
    assert.equal(jsonpObject(start).status, 200, 'start: {status: 200}');
    const ro = only(t, '/oauth/ro', 'GET');
    assert.equal(query(ro).password, code);
    const tokens = jsonpObject(ro);
    assert.equal(tokens.error, undefined, 'no error key');
    assert.ok(tokens.id_token, 'an id_token');
    assert.equal(t.sent('/passwordless/start', 'POST').length + t.sent('/oauth/ro', 'POST').length, 0, 'no XHR');
  }));

test('forceJSONP: Lock Passwordless v2 email code with a callbackURL (JSONP start and verify)', { timeout: 60_000 }, () =>
  stack.run('lock-v2-jsonp', async (t) => {
    const email = uniqueEmail('lock2-jsonp');
    const page = await t.newPage();
    const code = await lockEmailCode(t, page, '/000/lock?jsonp=1', email);
    await t.expectCallback(page, { email });

    const start = only(t, '/passwordless/start', 'GET');
    assert.equal(jsonpObject(start).status, 200, 'start: {status: 200}');
    const verify = only(t, '/passwordless/verify', 'GET');
    assert.equal(query(verify).verification_code, code);
    assert.equal(query(verify).client_id, undefined, 'no client_id on verify');
    // Lock navigates to verify_redirect only when verify's callback had {status: 200}; the
    // navigation can also come before the browser hands the script's body over for the record.
    if (verify.responseBody !== undefined) assert.equal(jsonpObject(verify).status, 200, 'verify: {status: 200}');
    only(t, '/passwordless/verify_redirect', 'GET');
  }));

// ------------------------------------------------------------------------------------------
// Bad input
// ------------------------------------------------------------------------------------------

test('Lock Passwordless v2: a wrong code shows "Wrong email or verification code"; the right one then signs in', { timeout: 60_000 }, () =>
  stack.run('lock-v2-wrong-code', async (t) => {
    const email = uniqueEmail('lock2-wrong');
    const page = await t.newPage();
    await openLock(t, page, '/000/lock', EMAIL_INPUT);
    await page.fill(EMAIL_INPUT, email);
    await page.click(SUBMIT);
    await page.waitForSelector(VCODE_INPUT, { state: 'visible' });
    const code = await stack.codeFor(email);
    await page.fill(VCODE_INPUT, wrongCode(code));
    await page.click(SUBMIT);
    const error = page.locator(LOCK_ERROR);
    await error.waitFor({ state: 'visible' });
    await lockShot(t, page, 'lock-wrong-code');
    assert.match(await error.innerText(), /Wrong email or verification code/);
    assert.equal(page.url(), `${t.app}/000/lock`, 'Lock stays on the code screen');

    const refused = t.sent('/passwordless/verify', 'POST');
    assert.equal(refused.length, 1);
    assert.ok(refused[0].status >= 400 && refused[0].status < 500, `a 4xx for the wrong code: ${refused[0].status}`);
    assert.equal(JSON.parse(refused[0].responseBody).error, 'invalid_user_password');

    // The wrong code did not use up the right one.
    await page.fill(VCODE_INPUT, code);
    await page.click(SUBMIT);
    await t.expectCallback(page, { email });
  }));

test('auth0.js v7 without a callback URL: a wrong code gets invalid_user_password from /oauth/ro', { timeout: 60_000 }, () =>
  stack.run('auth0js-v7-ro-wrong-code', async (t) => {
    const email = uniqueEmail('v7-ro-wrong');
    const page = await t.newPage();
    await ownUi(t, page, '/000/own-no-callback', { email }, async () => wrongCode(await stack.codeFor(email)));
    await page.locator('#error').waitFor({ state: 'visible' });
    await t.shot(page, 'error-shown');
    const shown = JSON.parse(await page.textContent('#error'));
    assert.equal(shown.code, 'invalid_user_password', `the LoginError's code: ${JSON.stringify(shown)}`);
    assert.ok(shown.status >= 400 && shown.status < 500, `a 4xx: ${shown.status}`);
    const ro = only(t, '/oauth/ro', 'POST');
    assert.equal(JSON.parse(ro.responseBody).error, 'invalid_user_password');
    assert.equal(t.dialogs.length, 1, 'the seed page alerted once');
    assert.match(t.dialogs[0], /^code verification failed\./);
  }));

test('an application without legacy_passwordless gets an error from /oauth/ro', { timeout: 60_000 }, () =>
  stack.run('no-legacy-switch', async (t) => {
    const email = uniqueEmail('modern-ro');
    const page = await t.newPage();
    const code = await ownUi(t, page, '/000/own-no-callback?client=modern', { email }, () => stack.codeFor(email));
    await page.locator('#error').waitFor({ state: 'visible' });
    await t.shot(page, 'error-shown');
    const shown = JSON.parse(await page.textContent('#error'));
    t.note(`the page shows: ${JSON.stringify(shown)}`);
    assert.ok(shown.status >= 400 && shown.status < 500, `a 4xx: ${JSON.stringify(shown)}`);
    assert.equal(typeof shown.code, 'string', 'an error code');
    assert.notEqual(shown.code, 'invalid_user_password', 'refused for the switch, not for the code');

    const ro = only(t, '/oauth/ro', 'POST');
    assert.equal(form(ro).client_id, MODERN_CLIENT_ID);
    assert.equal(form(ro).password, code);
    const body = JSON.parse(ro.responseBody);
    assert.equal(typeof body.error, 'string', `Auth0's error shape: ${ro.responseBody}`);
    assert.equal(typeof body.error_description, 'string', `Auth0's error shape: ${ro.responseBody}`);
    assert.equal(body.id_token, undefined, 'no token');
    assert.equal(body.access_token, undefined, 'no token');
  }));

test('Lock Passwordless v2 with an unknown client ID: an error on the email screen, no email sent', { timeout: 60_000 }, () =>
  stack.run('lock-v2-unknown-client', async (t) => {
    const email = uniqueEmail('lock2-unknown');
    const page = await t.newPage();
    await openLock(t, page, '/000/lock?client_id=no-such-client', EMAIL_INPUT);
    await page.fill(EMAIL_INPUT, email);
    await page.click(SUBMIT);
    const error = page.locator(LOCK_ERROR);
    await error.waitFor({ state: 'visible' });
    await lockShot(t, page, 'lock-unknown-client');
    t.note(`Lock shows: ${await error.innerText()}`);
    assert.equal(await page.locator(VCODE_INPUT).count(), 0, 'no code screen');
    const start = only(t, '/passwordless/start', 'POST');
    assert.ok(start.status >= 400 && start.status < 500, `a 4xx: ${start.status} ${start.responseBody}`);
    assert.equal(typeof JSON.parse(start.responseBody).error, 'string', `an error code: ${start.responseBody}`);
    await assert.rejects(stack.waitForMail(email, 2000), /no email/, 'no email was sent');
  }));

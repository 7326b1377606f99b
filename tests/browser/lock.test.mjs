// Lock (Auth0LockPasswordless 14.3.0, unchanged) on the example app's /lock page, against a
// real Tessera: sign in with an email code, and with a magic link.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Stack, uniqueEmail } from './harness.mjs';

const stack = new Stack('lock');
before(() => stack.start(), { timeout: 90_000 });
after(() => stack.stop());

const EMAIL_INPUT = '.auth0-lock input[name="email"]';
const SUBMIT = '.auth0-lock button.auth0-lock-submit';

/** Opens /lock and waits for Lock's email field; returns how long that took. */
async function openLock(t, page, method) {
  const started = Date.now();
  await page.goto(`${t.app}/lock?method=${method}`);
  await page.waitForSelector(EMAIL_INPUT, { state: 'visible', timeout: 15_000 });
  const ms = Date.now() - started;
  t.note(`Lock's email field appeared after ${ms} ms`);
  await t.shot(page, 'lock-email');
  return ms;
}

test("Lock's SSO check (a hidden /authorize?prompt=none iframe) does not hold the widget up", { timeout: 60_000 }, () =>
  stack.run('lock-sso-probe', async (t) => {
    const page = await t.newPage();
    const probe = page.waitForResponse(
      (r) => r.url().startsWith(`${t.tessera}/authorize?`) && r.url().includes('prompt=none'),
      { timeout: 10_000 },
    );
    const ms = await openLock(t, page, 'code');
    const response = await probe;
    const url = new URL(response.url());
    assert.equal(url.searchParams.get('response_mode'), 'web_message');
    assert.equal(response.status(), 200, `${response.url()} answers 200`);
    const body = await response.text();
    assert.match(body, /authorization_response/, 'the web_message answer posts an authorization_response');
    assert.match(body, /login_required/, 'no session yet: login_required');
    // Lock gives up on the probe after 5 s; a working probe answers at once.
    assert.ok(ms < 4500, `Lock's email field appeared after ${ms} ms (a stalled SSO check takes 5 s or more)`);
  }));

test('Lock passwordless: email code', { timeout: 60_000 }, () =>
  stack.run('lock-code', async (t) => {
    const email = uniqueEmail('lock-code');
    const page = await t.newPage();
    await openLock(t, page, 'code');
    await page.fill(EMAIL_INPUT, email);
    await page.click(SUBMIT);
    const vcode = page.locator('.auth0-lock input[name="vcode"]');
    await vcode.waitFor({ state: 'visible' });
    await t.shot(page, 'lock-code-asked');
    const code = await stack.codeFor(email);
    await vcode.fill(code);
    await page.click(SUBMIT);
    await t.expectProfile(page, email);
  }));

test('Lock passwordless: magic link (confirmation page, as the start had no Tessera cookie)', { timeout: 60_000 }, () =>
  stack.run('lock-link', async (t) => {
    const email = uniqueEmail('lock-link');
    const page = await t.newPage();
    await openLock(t, page, 'link');
    await page.fill(EMAIL_INPUT, email);
    await page.click(SUBMIT);
    const sent = page.locator('.auth0-lock .auth0-lock-confirmation');
    await sent.waitFor({ state: 'visible' });
    assert.match(await sent.innerText(), /sent you a link/i);
    await t.shot(page, 'lock-link-sent');
    const link = await stack.linkFor(email);
    await page.goto(link);
    await page.waitForSelector('button#confirm');
    await t.shot(page, 'confirmation-page');
    await page.click('button#confirm');
    await t.expectProfile(page, email);
  }));

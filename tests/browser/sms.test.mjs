// Sign-in by text message (the sms connection), with Tessera sending through a fake Twilio that
// checks every request as Twilio does: Lock (Auth0LockPasswordless 14.3.0, unchanged) on the
// example app's /lock?connection=sms, auth0-js 10.2.1 in the app's own form on
// /custom?connection=sms, and Tessera's hosted login page from /login?connection=sms.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FakeTwilio, SMS_FROM, Stack, smsCode, testPhone } from './harness.mjs';

const stack = new Stack('sms');
before(() => stack.start(), { timeout: 90_000 });
after(() => stack.stop());

const PHONE_INPUT = '.auth0-lock input[name="phoneNumber"]';
const LOCATION = '.auth0-lock input[name="location"]';
const VCODE_INPUT = '.auth0-lock input[name="vcode"]';
const SUBMIT = '.auth0-lock button.auth0-lock-submit';

/** What Tessera sent: from the configured number, in the built-in template, nothing refused. */
function checkMessage(message, phone, code) {
  assert.equal(message.to, phone);
  assert.equal(message.from, SMS_FROM);
  assert.equal(message.messagingServiceSid, null, 'From, not MessagingServiceSid');
  assert.match(message.body, new RegExp(`^${code} is your verification code for Example RWA\\b`));
  assert.ok(
    message.body.endsWith(`\n\n@localhost #${code}`),
    `the message ends with the WebOTP line for Tessera's host: ${JSON.stringify(message.body)}`,
  );
  assert.deepEqual(stack.twilio.refused, [], 'the fake Twilio refused none of Tessera\'s requests');
}

describe('the fake Twilio', () => {
  test('refuses what Twilio refuses, in Twilio\'s error format, and keeps what it accepts', { timeout: 30_000 }, async () => {
    const twilio = await new FakeTwilio({
      log: path.join(stack.dir, 'fake-twilio-selftest.log'),
    }).start();
    try {
      const url = `${twilio.url}/2010-04-01/Accounts/${twilio.accountSid}/Messages.json`;
      const auth = `Basic ${Buffer.from(`${twilio.accountSid}:${twilio.authToken}`).toString('base64')}`;
      const post = async (target, form, headers = {}) => {
        const r = await fetch(target, {
          method: 'POST',
          headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded', ...headers },
          body: new URLSearchParams(form).toString(),
        });
        return { status: r.status, body: await r.json() };
      };
      const good = { To: '+14155552671', Body: '123456 is your code', From: SMS_FROM };

      const wrongToken = `Basic ${Buffer.from(`${twilio.accountSid}:nope`).toString('base64')}`;
      const badAuth = await post(url, good, { authorization: wrongToken });
      assert.equal(badAuth.status, 401);
      assert.deepEqual(badAuth.body, {
        code: 20003,
        message: 'Authenticate',
        more_info: 'https://www.twilio.com/docs/errors/20003',
        status: 401,
      });
      const otherAccount = url.replace(twilio.accountSid, `AC${'0'.repeat(32)}`);
      assert.equal((await post(otherAccount, good)).body.code, 20003, 'the path names another account');
      assert.equal((await post(url, good, { authorization: '' })).status, 401, 'no credentials');

      const notE164 = await post(url, { ...good, To: '4155552671' });
      assert.equal(notE164.status, 400);
      assert.equal(notE164.body.code, 21211);
      assert.equal(notE164.body.status, 400);
      assert.equal((await post(url, { ...good, To: '+1 415 555 2671' })).body.code, 21211);
      assert.equal((await post(url, { Body: 'x', From: SMS_FROM })).body.code, 21604, 'no To');
      assert.equal((await post(url, { To: good.To, From: SMS_FROM })).body.code, 21602, 'no Body');
      assert.equal((await post(url, { To: good.To, Body: 'x' })).body.code, 21603, 'neither From nor service');
      const both = await post(url, { ...good, MessagingServiceSid: `MG${'1'.repeat(32)}` });
      assert.equal(both.body.code, 21603, 'both From and MessagingServiceSid');
      const json = await fetch(url, {
        method: 'POST',
        headers: { authorization: auth, 'content-type': 'application/json' },
        body: JSON.stringify(good),
      });
      assert.equal(json.status, 400, 'a JSON body');
      assert.equal(twilio.messages.length, 0, 'nothing refused was kept');

      const ok = await post(url, good);
      assert.equal(ok.status, 201);
      assert.equal(ok.body.status, 'queued');
      assert.equal(ok.body.to, good.To);
      assert.equal(ok.body.body, good.Body);
      assert.match(ok.body.sid, /^SM[0-9a-f]{32}$/);
      const viaService = await post(url, { To: '+14155552672', Body: '654321', MessagingServiceSid: `MG${'1'.repeat(32)}` });
      assert.equal(viaService.status, 201);
      assert.equal((await twilio.waitFor('+14155552671', 1000)).body, good.Body);
      await assert.rejects(twilio.waitFor('+14155552671', 200), /no text message/, 'each message is returned once');
      assert.equal(smsCode('123456 is your code.\n\n@localhost #123456'), '123456');
      assert.throws(() => smsCode('123456 is your code.\n\n@localhost #654321'), /WebOTP line/);
    } finally {
      await twilio.stop();
    }
  });
});

test('Lock passwordless: a code by text message (phone field with the country picker)', { timeout: 60_000 }, () =>
  stack.run('lock-sms', async (t) => {
    const phone = testPhone(0); // +14155552671
    const national = phone.slice(2); // Lock adds the country's dialling code, +1
    const page = await t.newPage();
    const geoloc = page.waitForResponse((r) => r.url() === `${t.tessera}/user/geoloc/country`, { timeout: 15_000 });
    await page.goto(`${t.app}/lock?connection=sms`);
    const country = await geoloc;
    assert.equal(country.status(), 200, 'GET /user/geoloc/country');
    assert.deepEqual(await country.json(), { country_code: 'US' });
    await page.waitForSelector(PHONE_INPUT, { state: 'visible', timeout: 15_000 });
    const location = page.locator(LOCATION);
    await location.waitFor({ state: 'visible' });
    assert.equal(await location.inputValue(), '+1 United States', 'the default country is the US (+1)');
    assert.equal(await page.locator('.auth0-lock input[name="email"]').count(), 0, 'no email field');
    await t.shot(page, 'lock-phone');

    await page.fill(PHONE_INPUT, national);
    const start = page.waitForRequest((r) => r.url() === `${t.tessera}/passwordless/start` && r.method() === 'POST');
    await page.click(SUBMIT);
    const sent = JSON.parse((await start).postData());
    assert.equal(sent.connection, 'sms');
    assert.equal(sent.phone_number, phone, 'Lock sends the number in E.164');
    assert.equal(sent.send, 'code');

    const vcode = page.locator(VCODE_INPUT);
    await vcode.waitFor({ state: 'visible' });
    await t.shot(page, 'lock-sms-code-asked');
    const code = await stack.smsCodeFor(phone);
    checkMessage(stack.twilio.messages.find((m) => m.to === phone), phone, code);
    await vcode.fill(code);
    await page.click(SUBMIT);
    await t.expectProfile(page, { phone });
  }));

test('auth0-js custom UI: SMS code', { timeout: 60_000 }, () =>
  stack.run('custom-sms', async (t) => {
    const phone = testPhone(2); // +14155552673
    const page = await t.newPage();
    await page.goto(`${t.app}/custom?connection=sms`);
    const input = page.locator('input#phone[type="tel"]');
    await input.waitFor({ state: 'visible' });
    assert.equal(await page.locator('#email').count(), 0, 'no email field');
    await t.shot(page, 'custom-phone');

    await input.fill(phone);
    const start = page.waitForRequest((r) => r.url() === `${t.tessera}/passwordless/start` && r.method() === 'POST');
    await page.click('#send');
    const sent = JSON.parse((await start).postData());
    assert.equal(sent.connection, 'sms');
    assert.equal(sent.phone_number, phone, 'auth0-js sends phoneNumber as phone_number');
    assert.equal(sent.send, 'code');
    assert.equal(sent.email, undefined, 'no email');

    const codeInput = page.locator('#code');
    await codeInput.waitFor({ state: 'visible' });
    assert.equal((await page.textContent('#sent-to'))?.trim(), phone, 'the code step names the number');
    assert.equal(await page.isVisible('#error'), false);
    await t.shot(page, 'custom-sms-code-asked');
    const code = await stack.smsCodeFor(phone);
    checkMessage(stack.twilio.messages.find((m) => m.to === phone), phone, code);

    await codeInput.fill(code);
    const authenticate = page.waitForRequest((r) => r.url() === `${t.tessera}/co/authenticate` && r.method() === 'POST');
    const authorize = page.waitForRequest((r) => r.url().startsWith(`${t.tessera}/authorize?`) && r.isNavigationRequest());
    await page.click('#verify');
    const co = JSON.parse((await authenticate).postData());
    assert.equal(co.realm, 'sms', '/co/authenticate realm');
    assert.equal(co.username, phone, '/co/authenticate username');
    assert.equal(co.otp, code, '/co/authenticate otp');
    assert.equal(co.credential_type, 'http://auth0.com/oauth/grant-type/passwordless/otp');
    const q = new URL((await authorize).url()).searchParams;
    assert.equal(q.get('realm'), 'sms', '/authorize realm');
    assert.ok(q.get('login_ticket'), '/authorize login_ticket');
    await t.expectProfile(page, { phone });
  }));

test("Tessera's hosted page by phone: /login?connection=sms shows only the phone form", { timeout: 60_000 }, () =>
  stack.run('hosted-sms', async (t) => {
    const phone = testPhone(1); // +14155552672
    const page = await t.newPage();
    await page.goto(`${t.app}/login?connection=sms`);
    await page.waitForURL((url) => url.href.startsWith(`${t.tessera}/authorize?`));
    assert.equal(new URL(page.url()).searchParams.get('connection'), 'sms', '/authorize?connection=sms');
    const input = page.locator('input#phone[name="phone"][type="tel"]');
    await input.waitFor({ state: 'visible' });
    assert.equal(await page.locator('button#send-sms').count(), 1, 'button#send-sms');
    assert.equal(await page.locator('input#email').count(), 0, 'no email form');
    assert.equal(await page.locator('button#send-code, button#send-link').count(), 0, 'no email buttons');
    await t.shot(page, 'hosted-phone-page');

    await input.fill(phone);
    await page.click('button#send-sms');
    const codeInput = page.locator('input#code[name="code"][autocomplete="one-time-code"]');
    await codeInput.waitFor({ state: 'visible' });
    assert.equal((await page.textContent('#sent-to'))?.trim(), phone, 'the code page names the number');
    assert.equal(await page.locator('script[src="/static/webotp.js"]').count(), 1, 'the WebOTP helper');
    await t.shot(page, 'code-page');

    const code = await stack.smsCodeFor(phone);
    checkMessage(stack.twilio.messages.find((m) => m.to === phone), phone, code);
    await codeInput.fill(code);
    await page.click('button#verify');
    await t.expectProfile(page, { phone });
  }));

test('/login without a connection shows both forms; ?connection=email only the email form', { timeout: 60_000 }, () =>
  stack.run('hosted-forms', async (t) => {
    const page = await t.newPage();
    await page.goto(`${t.app}/login`);
    await page.waitForURL((url) => url.href.startsWith(`${t.tessera}/authorize?`));
    await page.locator('input#email').waitFor({ state: 'visible' });
    assert.equal(await page.locator('input#phone').count(), 1, 'the phone form too');
    await t.shot(page, 'both-forms');
    await page.goto(`${t.app}/login?connection=email`);
    await page.waitForURL((url) => url.searchParams.get('connection') === 'email');
    await page.locator('input#email').waitFor({ state: 'visible' });
    assert.equal(await page.locator('input#phone').count(), 0, 'no phone form');
    await t.shot(page, 'email-form-only');
  }));

// "Use your own UI": the example app's /custom page drives auth0-js 10.2.1 (unchanged) against a
// real Tessera: passwordlessStart + passwordlessLogin with a code, and passwordlessStart with a
// magic link.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Stack, uniqueEmail } from './harness.mjs';

const stack = new Stack('custom');
before(() => stack.start(), { timeout: 90_000 });
after(() => stack.stop());

test('auth0-js custom UI: email code', { timeout: 60_000 }, () =>
  stack.run('custom-code', async (t) => {
    const email = uniqueEmail('custom-code');
    const page = await t.newPage();
    await page.goto(`${t.app}/custom?send=code`);
    await page.fill('#email', email);
    await page.click('#send');
    await page.waitForSelector('#code', { state: 'visible' });
    await t.shot(page, 'code-asked');
    await page.fill('#code', await stack.codeFor(email));
    await page.click('#verify');
    await t.expectProfile(page, email);
  }));

test('auth0-js custom UI: magic link (confirmation page)', { timeout: 60_000 }, () =>
  stack.run('custom-link', async (t) => {
    const email = uniqueEmail('custom-link');
    const page = await t.newPage();
    await page.goto(`${t.app}/custom?send=link`);
    await page.fill('#email', email);
    await page.click('#send');
    await page.waitForSelector('#check-email', { state: 'visible' });
    assert.equal(await page.isVisible('#error'), false);
    await t.shot(page, 'check-email');
    await page.goto(await stack.linkFor(email));
    await page.waitForSelector('button#confirm');
    await t.shot(page, 'confirmation-page');
    await page.click('button#confirm');
    await t.expectProfile(page, email);
  }));

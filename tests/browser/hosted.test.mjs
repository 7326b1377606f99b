// The example app's "Log in": Tessera's hosted login page (/authorize), by code and by link; and
// a link opened in another browser than the one that asked for it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Stack, uniqueEmail } from './harness.mjs';

const stack = new Stack('hosted');
before(() => stack.start(), { timeout: 90_000 });
after(() => stack.stop());

/** From the app's home page to Tessera's hosted page, then asks for a code or a link. */
async function startOnHostedPage(t, page, email, send) {
  await page.goto(`${t.app}/`);
  await page.click('a#login');
  await page.waitForURL((url) => url.href.startsWith(`${t.tessera}/authorize`));
  const input = page.locator('input#email[name="email"]');
  await input.waitFor({ state: 'visible' });
  assert.equal(await page.locator('button#send-code').count(), 1, 'button#send-code');
  assert.equal(await page.locator('button#send-link').count(), 1, 'button#send-link');
  await t.shot(page, 'hosted-page');
  await input.fill(email);
  await page.click(send === 'code' ? 'button#send-code' : 'button#send-link');
}

describe("Tessera's hosted login page", () => {
  test('by code', { timeout: 60_000 }, () =>
    stack.run('hosted-code', async (t) => {
      const email = uniqueEmail('hosted-code');
      const page = await t.newPage();
      await startOnHostedPage(t, page, email, 'code');
      const code = page.locator('input#code[name="code"][autocomplete="one-time-code"]');
      await code.waitFor({ state: 'visible' });
      await t.shot(page, 'code-page');
      await code.fill(await stack.codeFor(email));
      await page.click('button#verify');
      await t.expectProfile(page, email);
    }));

  test('by link, opened in the same browser: straight through, no confirmation', { timeout: 60_000 }, () =>
    stack.run('hosted-link', async (t) => {
      const email = uniqueEmail('hosted-link');
      const page = await t.newPage();
      await startOnHostedPage(t, page, email, 'link');
      await page.waitForSelector('#check-email', { state: 'visible' });
      await t.shot(page, 'check-email');
      const link = await stack.linkFor(email);
      await page.goto(link);
      const confirmation = await page.locator('button#confirm').count();
      assert.ok(
        page.url().startsWith(`${t.app}/`) && confirmation === 0,
        `the link opened in the same browser goes straight to the app, but the page is at ${page.url()}` +
          (confirmation ? ' (a confirmation page)' : ''),
      );
      await t.expectProfile(page, email);
    }));
});

test('a link asked for in browser A and opened in browser B: confirmation page, then signed in in B', { timeout: 60_000 }, () =>
  stack.run('other-browser', async (t) => {
    const email = uniqueEmail('other-browser');
    const pageA = await t.newPage(await t.newContext('A'));
    await startOnHostedPage(t, pageA, email, 'link');
    await pageA.waitForSelector('#check-email', { state: 'visible' });
    const link = await stack.linkFor(email);
    const pageB = await t.newPage(await t.newContext('B'));
    await pageB.goto(link);
    await pageB.waitForSelector('button#confirm');
    await t.shot(pageB, 'confirmation-page-B');
    await pageB.click('button#confirm');
    await t.expectProfile(pageB, email);
  }));

// A magic link that a mail scanner fetches before the user opens it (HEAD, then a cookie-less
// GET) must still work for the user: neither request may consume it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Stack, fetchLikeAScanner, uniqueEmail } from './harness.mjs';

const stack = new Stack('scanner');
before(() => stack.start(), { timeout: 90_000 });
after(() => stack.stop());

test('a link scanner (HEAD, then GET without cookies) does not use up the magic link', { timeout: 60_000 }, () =>
  stack.run('scanner', async (t) => {
    const email = uniqueEmail('scanned');
    const page = await t.newPage();
    await page.goto(`${t.app}/custom?send=link`);
    await page.fill('#email', email);
    await page.click('#send');
    await page.waitForSelector('#check-email', { state: 'visible' });
    const link = await stack.linkFor(email);

    const head = await fetchLikeAScanner(link, 'HEAD');
    t.note(`scanner HEAD ${link} -> ${head.status} location=${head.location}`);
    assert.ok(!(head.location || '').includes('code='), `HEAD must not redirect with a code (${head.status} ${head.location})`);
    assert.ok(head.status < 300 || head.status === 405, `HEAD answers ${head.status}`);

    const get = await fetchLikeAScanner(link, 'GET');
    t.note(`scanner GET ${link} -> ${get.status} location=${get.location}`);
    assert.equal(get.status, 200, `a cookie-less GET shows the confirmation page (got ${get.status} ${get.location ?? ''})`);
    assert.match(get.body, /id="confirm"/, 'the confirmation page has button#confirm');
    assert.match(get.headers.get('content-type') || '', /text\/html/);

    await page.goto(link);
    await page.waitForSelector('button#confirm');
    await t.shot(page, 'confirmation-page');
    await page.click('button#confirm');
    await t.expectProfile(page, email);
  }));

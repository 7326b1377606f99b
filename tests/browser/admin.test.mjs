// The dashboard at /admin, in Chromium, against the real binary: an administrator signs in
// through Tessera's own hosted login page (a code from the SMTP server), creates an application
// and changes its callback URL, edits the email template and watches the preview (live, and
// with the Preview button, in two languages), finds the user a sign-in made, blocks them, and
// sees their next sign-in refused on the hosted page; signing keys and the logs; someone who is
// not an administrator is refused; sign-out ends the session.
//
// Each page is screenshotted into artifacts/<run>/admin/<test>/. With DOCS_SHOTS=1 the README's
// pictures are written again too, to docs/dashboard/ (viewport-sized PNGs).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO, Stack, uniqueEmail } from './harness.mjs';

const ADMIN = 'ops@example.com';
const DOCS = path.join(REPO, 'docs/dashboard');

/** The standard stack, with one administrator. */
class AdminStack extends Stack {
  tesseraConfig() {
    return `${super.tesseraConfig()}
[admin]
emails = ["${ADMIN.toUpperCase()}"]
`;
  }
}

const stack = new AdminStack('admin');
before(() => stack.start(), { timeout: 90_000 });
after(() => stack.stop());

/** A viewport-sized picture for the README (from `top`, a selector), when DOCS_SHOTS is set. */
async function docShot(page, name, top) {
  if (!process.env.DOCS_SHOTS) return;
  fs.mkdirSync(DOCS, { recursive: true });
  await page.setViewportSize({ width: 1100, height: 700 });
  if (top) await page.locator(top).first().evaluate((el) => el.scrollIntoView({ block: 'start' }));
  else await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(DOCS, `${name}.png`) });
  await page.setViewportSize({ width: 1100, height: 900 });
}

/** /admin → the hosted login page → a code by email → the dashboard (or its refusal). */
async function signIn(t, page, email = ADMIN) {
  await page.goto(`${t.tessera}/admin`);
  await page.waitForURL((url) => url.href.startsWith(`${t.tessera}/authorize?`));
  const url = new URL(page.url());
  assert.equal(url.searchParams.get('client_id'), 'tessera-dashboard');
  assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(await page.locator('button#send-sms').count(), 0, 'email only');
  await page.locator('input#email').fill(email);
  await t.shot(page, 'sign-in-page');
  await page.click('button#send-code');
  const code = page.locator('input#code');
  await code.waitFor({ state: 'visible' });
  await t.shot(page, 'sign-in-code');
  await code.fill(await stack.codeFor(email));
  await page.click('button#verify');
}

/** A page of a new browser, signed in to the dashboard as the administrator. */
async function adminPage(t) {
  const page = await t.newPage(await t.newContext('admin'));
  await signIn(t, page);
  await page.waitForURL(`${t.tessera}/admin/applications`);
  assert.equal((await page.textContent('#admin-email'))?.trim(), ADMIN);
  return page;
}

/** A user signs in to the example app through the hosted page; their browser's page. */
async function userSignsIn(t, email, contextName) {
  const page = await t.newPage(await t.newContext(contextName));
  await page.goto(`${t.app}/`);
  await page.click('a#login');
  await page.waitForURL((url) => url.href.startsWith(`${t.tessera}/authorize`));
  await page.locator('input#email').fill(email);
  await page.click('button#send-code');
  await page.locator('input#code').waitFor({ state: 'visible' });
  return page;
}

describe('the dashboard', () => {
  test('an administrator signs in with a code; others are refused; sign-out ends it', { timeout: 60_000 }, () =>
    stack.run('sign-in', async (t) => {
      const page = await adminPage(t);
      await t.shot(page, 'applications');
      assert.equal(await page.locator('table#apps').getByText('Example RWA').count(), 1);
      assert.equal(await page.locator('body').getByText('tessera-dashboard').count(), 0, 'its own app is hidden');
      // The strict CSP: no inline anything, the stylesheet loaded from the dashboard.
      const csp = (await page.request.get(`${t.tessera}/admin/applications`)).headers()['content-security-policy'];
      assert.match(csp, /default-src 'none'; style-src 'self'; script-src 'self'/);
      assert.equal(await page.evaluate(() => getComputedStyle(document.querySelector('header.top')).display), 'flex');

      const other = await t.newPage(await t.newContext('mallory'));
      await signIn(t, other, 'mallory@example.com');
      await other.waitForSelector('h1#title');
      assert.equal((await other.textContent('h1#title'))?.trim(), 'Not an administrator');
      await t.shot(other, 'not-an-administrator');
      await other.goto(`${t.tessera}/admin/users`);
      await other.waitForURL((url) => url.href.startsWith(`${t.tessera}/authorize?`));

      await page.click('button#logout');
      await page.waitForURL(`${t.tessera}/admin/signed-out`);
      await t.shot(page, 'signed-out');
      await page.goto(`${t.tessera}/admin/keys`);
      await page.waitForURL((url) => url.href.startsWith(`${t.tessera}/authorize?`));
    }));

  test('creates an application and changes its callback URL', { timeout: 60_000 }, () =>
    stack.run('applications', async (t) => {
      const page = await adminPage(t);
      await page.click('a#new-app');
      await page.fill('input#name', 'Shop');
      await page.check('input[name="app_type"][value="regular_web"]');
      await page.fill('textarea#callbacks', 'https://shop.example.com/callback');
      await page.fill('textarea#web_origins', 'https://shop.example.com');
      await t.shot(page, 'new-application');
      await page.click('button#create');
      await page.waitForSelector('#client-secret');
      const clientId = (await page.textContent('#client-id'))?.trim();
      const secret = (await page.textContent('#client-secret'))?.trim();
      assert.match(clientId, /^[A-Za-z0-9]{32}$/);
      assert.ok(secret.length >= 43, 'a secret is shown once');
      await t.shot(page, 'created-secret-shown-once');

      await page.click('a#to-app');
      await page.waitForSelector('form#app-form');
      assert.equal(await page.locator('body').getByText(secret).count(), 0, 'never shown again');
      assert.equal(await page.inputValue('textarea#callbacks'), 'https://shop.example.com/callback');
      await page.fill('textarea#callbacks', 'https://shop.example.com/auth/callback\nhttps://shop.example.com/callback2');
      await page.click('button#save');
      await page.waitForSelector('#flash');
      assert.equal((await page.textContent('#flash'))?.trim(), 'Saved.');
      assert.equal(
        await page.inputValue('textarea#callbacks'),
        'https://shop.example.com/auth/callback\nhttps://shop.example.com/callback2',
      );
      // The quick start is filled in with the domain, the id and the first callback, never the secret.
      const lock = await page.textContent('#snippet-lock');
      assert.ok(lock.includes(`new Auth0LockPasswordless('${clientId}', tessera`), lock);
      assert.ok(lock.includes("redirectUrl: 'https://shop.example.com/auth/callback'"), lock);
      const server = await page.textContent('#snippet-callback');
      assert.ok(server.includes(`${t.tessera}/oauth/token`) && server.includes('process.env.TESSERA_CLIENT_SECRET'));
      assert.ok(!server.includes(secret));
      await t.shot(page, 'application-saved');
      await docShot(page, 'application', '#quickstart');

      // The change is live: /authorize takes the new callback and refuses the old one.
      const authorize = (cb) =>
        `${t.tessera}/authorize?response_type=code&client_id=${clientId}&redirect_uri=${encodeURIComponent(cb)}&state=s`;
      const fresh = await t.newPage(await t.newContext('visitor'));
      await fresh.goto(authorize('https://shop.example.com/auth/callback'));
      await fresh.locator('input#email').waitFor({ state: 'visible' });
      assert.ok((await fresh.textContent('h1')).includes('Shop'));
      const old = await fresh.goto(authorize('https://shop.example.com/callback'));
      assert.equal(old.status(), 400, 'the old callback is refused');
      await t.shot(fresh, 'old-callback-refused');

      await page.goto(`${t.tessera}/admin/applications`);
      assert.equal(await page.locator('table#apps').getByText('Shop', { exact: true }).count(), 1);
    }));

  test('edits the email template and sees the preview, live and per language', { timeout: 90_000 }, () =>
    stack.run('template', async (t) => {
      const page = await adminPage(t);
      await page.click('a#nav-connections');
      await page.waitForSelector('table#connections');
      await t.shot(page, 'connections');
      await page.click('table#connections a:text-is("email")');
      await page.waitForSelector('iframe#preview');
      const preview = page.frameLocator('iframe#preview');
      // The saved (built-in) email, in English, at first.
      await assertPreviewSubject(preview, '123456 is your verification code for Sample App');

      // Live: the preview follows the typing (admin.js presses Preview after a pause).
      await page.check('input#template-custom');
      await page.fill('input#subject', '{{ code }} opens {{ application.name }}');
      await page.fill(
        'textarea#body',
        '<h1 style="color:#1f2937">Hello from Shop</h1><p>Your code: <strong id="c">{{ code }}</strong></p>' +
          '{% if request_language contains "fr" %}<p id="lang">Bonjour</p>{% endif %}<script>parent.x=1</script>',
      );
      await assertPreviewSubject(preview, '123456 opens Sample App');
      const email = preview.frameLocator('iframe#preview-html');
      await assert.doesNotReject(email.locator('h1').getByText('Hello from Shop').waitFor());
      assert.equal((await email.locator('#c').textContent())?.trim(), '123456');
      await t.shot(page, 'template-live-preview');
      await docShot(page, 'email-template', 'section:has(#template-custom)');

      // Per language, with the Preview button (what works without JavaScript).
      await page.selectOption('select#preview_lang', 'fr');
      await page.click('button#preview-button');
      await assert.doesNotReject(email.locator('#lang').getByText('Bonjour').waitFor());
      await page.check('input#template-builtin');
      await page.selectOption('select#preview_lang', 'de');
      await page.click('button#preview-button');
      await assertPreviewSubject(preview, '123456 ist Ihr Bestätigungscode für Sample App');
      await t.shot(page, 'template-preview-german');

      // Saved, the template is what users get.
      await page.check('input#template-custom');
      await page.click('button#save');
      await page.waitForSelector('#flash');
      assert.equal(await page.isChecked('input#template-custom'), true);
      assert.equal(await page.inputValue('input#subject'), '{{ code }} opens {{ application.name }}');
      const user = uniqueEmail('templated');
      await userSignsIn(t, user, 'user');
      const message = await stack.waitForMail(user);
      assert.match(message.subject, /^\d{6} opens Example RWA$/);
      assert.ok(message.html.includes('Hello from Shop'));

      // Back to the built-in, translated email.
      await page.check('input#template-builtin');
      await page.click('button#save');
      await page.waitForSelector('#flash');
      assert.equal(await page.isChecked('input#template-builtin'), true);
      await t.shot(page, 'template-back-to-built-in');
    }));

  test('finds the user a sign-in made, blocks them, and their next sign-in is refused', { timeout: 90_000 }, () =>
    stack.run('block', async (t) => {
      const email = uniqueEmail('blocked');
      // The user signs in to the example app (and keeps an SSO session in that browser).
      const first = await userSignsIn(t, email, 'user');
      await first.locator('input#code').fill(await stack.codeFor(email));
      await first.click('button#verify');
      await t.expectProfile(first, email);

      const page = await adminPage(t);
      await page.click('a#nav-users');
      await page.fill('input#q', email.split('@')[0]);
      await page.click('button#search');
      await page.waitForSelector('table#users');
      await t.shot(page, 'users-search');
      assert.equal(await page.locator('a.user-link').count(), 1);
      await page.click(`a.user-link:text-is("${email}")`);
      await page.waitForSelector('#user-id');
      const userId = (await page.textContent('#user-id'))?.trim();
      assert.match(userId, /^email\|[0-9a-f]{24}$/);
      assert.ok(await page.locator('#active-badge').isVisible());
      assert.equal(await page.locator('table#user-events').getByText('hosted login page').count() >= 1, true);
      await t.shot(page, 'user');
      await docShot(page, 'user');

      // The user starts a second sign-in in another browser and gets to the code page...
      const second = await userSignsIn(t, email, 'user-again');
      const code = await stack.codeFor(email);

      // ...while the administrator blocks them.
      await page.click('button#block');
      await page.waitForSelector('#blocked-badge');
      assert.equal(
        (await page.textContent('#flash'))?.trim(),
        'The user is blocked: their next sign-in is refused.',
      );
      await t.shot(page, 'user-blocked');

      // The code is refused on the hosted page.
      await second.locator('input#code').fill(code);
      await second.click('button#verify');
      await second.waitForSelector('#error');
      assert.equal((await second.textContent('#error'))?.trim(), 'user is blocked');
      assert.ok(second.url().startsWith(`${t.tessera}/login/verify`), 'no way back to the app');
      await t.shot(second, 'sign-in-refused');
      // And the first browser's session no longer signs them in: the login page again.
      await first.goto(`${t.app}/login`);
      await first.waitForURL((url) => url.href.startsWith(`${t.tessera}/authorize`));
      await first.locator('input#email').waitFor({ state: 'visible' });
      await t.shot(first, 'sso-refused');

      // The log has both sides: the block (in the user's events) and the refused sign-in.
      await page.click('a#user-logs');
      await page.waitForSelector('table#events');
      assert.equal(await page.locator('table#events').getByText(`Dashboard (${ADMIN}): user blocked`).count(), 1);
      await t.shot(page, 'user-logs');
      await page.goto(`${t.tessera}/admin/logs?type=f&client_id=example-rwa`);
      assert.ok((await page.locator('table#events').getByText('blocked user', { exact: true }).count()) >= 1);
      await t.shot(page, 'refused-sign-in-logged');
    }));

  test('logs: filters and one event', { timeout: 60_000 }, () =>
    stack.run('logs', async (t) => {
      const page = await adminPage(t);
      await page.click('a#nav-logs');
      await page.waitForSelector('form#log-filters');
      await page.selectOption('select#type', 'fapi');
      await page.click('button#filter');
      await page.waitForURL(/type=fapi/);
      const rows = page.locator('table#events tbody tr');
      assert.ok((await rows.count()) >= 1, 'the refused dashboard sign-in');
      assert.equal(await page.locator('table#events').getByText('Dashboard sign-in refused: not an administrator').count(), await rows.count());
      await t.shot(page, 'logs-fapi');
      await page.selectOption('select#type', 'sapi');
      await page.click('button#filter');
      await page.waitForURL(/type=sapi/);
      await docShot(page, 'logs');
      await page.fill('input#client_id', 'tessera-dashboard');
      await page.click('button#filter');
      await page.waitForURL(/client_id=tessera-dashboard/);
      await page.locator('a.event-link').first().click();
      await page.waitForSelector('#event-description');
      assert.match((await page.textContent('#event-description'))?.trim(), /^Dashboard \(ops@example\.com\): signed (in|out)$/);
      assert.equal((await page.textContent('#event-type'))?.trim(), 'sapi');
      await t.shot(page, 'log-event');
    }));

  test('signing keys: rotate, then revoke the previous key', { timeout: 60_000 }, () =>
    stack.run('keys', async (t) => {
      const page = await adminPage(t);
      await page.click('a#nav-keys');
      await page.waitForSelector('table#keys');
      await t.shot(page, 'keys');
      const before = await page.locator('code.kid').allTextContents();
      await page.click('a#rotate-key');
      await page.waitForSelector('button#confirm');
      await t.shot(page, 'rotate-confirm');
      await page.click('button#confirm');
      await page.waitForSelector('#flash');
      const statuses = await page.locator('.key-status').allTextContents();
      assert.deepEqual(statuses.slice(0, 2), ['current', 'previous']);
      const [current, previous] = await page.locator('code.kid').allTextContents();
      assert.equal(previous, before[0]);
      await t.shot(page, 'rotated');
      await page.locator('a.button.danger:text-is("Revoke…")').first().click();
      await page.click('button#confirm');
      await page.waitForSelector('#flash');
      assert.equal((await page.locator('.key-status').allTextContents())[1], 'revoked');
      await t.shot(page, 'revoked');
      const jwks = await (await fetch(`${t.tessera}/.well-known/jwks.json`)).json();
      const kids = jwks.keys.map((k) => k.kid);
      assert.ok(kids.includes(current) && !kids.includes(previous), JSON.stringify(kids));
    }));
});

async function assertPreviewSubject(preview, expected) {
  const subject = preview.locator('#preview-subject');
  await assert.doesNotReject(subject.getByText(expected, { exact: true }).waitFor({ timeout: 10_000 }));
}

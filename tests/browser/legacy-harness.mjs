// The harness of the old widgets' tests (legacy.test.mjs): Lock Passwordless 2.2.3 and
// auth0.js 7.6.1 on the seed pages 000 (email code) and 002 (SMS code), against Tessera serving
// HTTPS itself.
//
// A LegacyStack starts, for one test file:
//   - a self-signed certificate for localhost (the openssl CLI), which Tessera serves;
//   - a real SMTP server (aiosmtpd, into a Maildir) and the fake Twilio of harness.mjs;
//   - Tessera over HTTPS (`[tls]`), issuer https://localhost:<port>/, with two applications: the
//     seed app (legacy_passwordless = true) and a modern app on the same pages without it;
//   - the "seed app" (node:http, in this process, http://localhost:<port>): the seed pages,
//     changed only in domain and client ID, the widget bundles that build-legacy.mjs makes, and a
//     /callback that exchanges the code at Tessera's /oauth/token (client_secret_post) and shows
//     the user;
//   - headless Chromium, which reaches nothing but localhost (--host-resolver-rules: the CDN and
//     gravatar hosts the widgets ask for do not resolve) and accepts the test certificate
//     (ignoreHTTPSErrors).
//
// Node's own requests to Tessera (the health check, /oauth/token, the JWKS) trust the test
// certificate through the `ca` option of node:https; nothing turns TLS checks off.
//
// Every test records what the browser sent to Tessera and what came back (method, path, query,
// content type, body, status, response body, and the CORS preflights, from the DevTools
// protocol) into wire.json in its artifacts folder; the file's wire-all.json has every test's.

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import assert from 'node:assert/strict';
import {
  HERE,
  MAIL_MS,
  SMS_FROM,
  STARTUP_MS,
  Stack,
  TestRun,
  freePort,
  oneTimeCode,
  smsCode,
  tailOf,
  verifySignature,
  waitUntil,
} from './harness.mjs';

/** The seed app's application at Tessera: legacy_passwordless = true. */
export const SEED_CLIENT_ID = 'seed-app';
/** The same pages' application without legacy_passwordless (the default). */
export const MODERN_CLIENT_ID = 'modern-app';

/** The widget bundles made by build-legacy.mjs, and where the seed app serves them. */
const VENDOR = {
  '/vendor/lock-passwordless-2.2.3.js': path.join(HERE, 'node_modules/auth0-lock-passwordless/build/lock-passwordless.js'),
  '/vendor/auth0-7.6.1.js': path.join(HERE, 'node_modules/auth0-js-7/build/auth0.js'),
  '/vendor/jquery.js': path.join(HERE, 'node_modules/jquery/dist/jquery.min.js'),
};

// Chromium resolves nothing but localhost: Lock v2 preloads its badge from cdn.auth0.com and
// asks gravatar.com for the avatar of a typed email; those requests fail (harmlessly) instead
// of leaving the machine. Not Playwright's request interception, which would hide the CORS
// preflights (legacy-wire.md §7).
const HOST_RULES = 'MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1';

// ------------------------------------------------------------------------------------------
// HTTPS to Tessera from Node, trusting the test certificate only
// ------------------------------------------------------------------------------------------

/**
 * One HTTPS request to `url` (https://localhost:<port>/…), trusting `ca`. `localhost` is
 * connected at 127.0.0.1 (where Tessera listens), with SNI and Host `localhost`; the certificate
 * is checked against that name (the `servername`) as usual. Answers
 * {status, headers, text, json()}.
 */
export function httpsRequest(url, { ca, method = 'GET', headers = {}, body, timeoutMs = 10_000 } = {}) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        servername: u.hostname,
        port: u.port || 443,
        path: `${u.pathname}${u.search}`,
        method,
        ca,
        headers: { host: u.host, ...headers },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: res.statusCode,
            headers: res.headers,
            text,
            json() {
              return JSON.parse(text);
            },
          });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** A self-signed certificate for localhost and 127.0.0.1 (openssl CLI), in `dir`. */
function makeCertificate(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  try {
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
        '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout', key, '-out', cert,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
  } catch (e) {
    throw new Error(`making the test certificate needs the openssl CLI (apt-get install openssl): ${e.message}`);
  }
  return { cert, key, ca: fs.readFileSync(cert) };
}

// ------------------------------------------------------------------------------------------
// Tokens
// ------------------------------------------------------------------------------------------

/**
 * Verifies an id_token as an independent party would: RS256 against Tessera's JWKS (fetched
 * over HTTPS, trusting the test certificate), `iss` https://localhost:<port>/, `aud`, `exp`.
 * `email` / `phone` are checked when the token carries them (the seeds ask for scope=openid
 * only, which need not put them in); `sub` must be an `email|` or `sms|` user accordingly.
 * `userId: true` asks for Auth0's legacy `user_id` claim, equal to `sub` (/oauth/ro).
 */
export async function verifyIdToken(stack, idToken, { clientId = SEED_CLIENT_ID, email, phone, userId = false } = {}) {
  const claims = await verifySignature(idToken, {
    tessera: stack.tessera,
    clientId,
    getJwks: () => httpsRequest(`${stack.tessera}/.well-known/jwks.json`, { ca: stack.ca }),
  });
  assert.ok(typeof claims.sub === 'string' && claims.sub.length > 0, 'sub');
  assert.equal(claims.nonce, undefined, 'no nonce (none was sent)');
  if (phone !== undefined) {
    assert.ok(claims.sub.startsWith('sms|'), `sub ${claims.sub} is an sms| user`);
    if ('phone_number' in claims) assert.equal(claims.phone_number, phone, 'phone_number');
    assert.equal(claims.email, undefined, 'no email claim for an sms user');
  } else {
    assert.ok(claims.sub.startsWith('email|'), `sub ${claims.sub} is an email| user`);
    if ('email' in claims) assert.equal(claims.email, email, 'email');
  }
  if (userId) assert.equal(claims.user_id, claims.sub, 'user_id (Auth0 legacy claim) equals sub');
  return claims;
}

// ------------------------------------------------------------------------------------------
// The seed app
// ------------------------------------------------------------------------------------------

const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
/** A value for a single- or double-quoted JavaScript string inside a <script>. */
const js = (s) => JSON.stringify(String(s)).replace(/</g, '\\u003c').replace(/'/g, '\\u0027').slice(1, -1);

function page(title, body) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(title)}</title>
<style>body{font-family:sans-serif;margin:2em} .hidden{display:none} pre{white-space:pre-wrap;word-break:break-all}</style>
</head>
<body>
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;
}

/** Shows the outcome of the verify call of the pages without a callbackURL (no redirect). */
const RESULT_HELPERS = `
<div id="signed-in" class="hidden">
  <h2>Signed in</h2>
  <p>sub: <span id="user-sub"></span></p>
  <p>id_token:</p>
  <pre id="id-token"></pre>
  <p>access_token: <span id="access-token"></span></p>
</div>
<pre id="error" class="hidden"></pre>
<script>
  function showResult(err, result) {
    if (err) {
      var shown = { name: err.name, message: err.message, status: err.status, statusCode: err.statusCode,
                    code: err.code, error: err.error, error_description: err.error_description, details: err.details };
      var el = document.getElementById('error');
      el.textContent = JSON.stringify(shown);
      el.className = '';
      return;
    }
    document.getElementById('user-sub').textContent = result.idTokenPayload && result.idTokenPayload.sub;
    document.getElementById('id-token').textContent = result.idToken;
    document.getElementById('access-token').textContent = result.accessToken;
    document.getElementById('signed-in').className = '';
  }
</script>`;

/**
 * The seed pages. Each is the seed's HTML/JS with only the client ID and domain (and the
 * callback URL) filled in; what is added around them is markup the seed leaves to the reader
 * (the inputs its jQuery selectors name) and, for the pages without a callbackURL, a callback
 * that shows the result.
 *
 * Two variants that are not in the seeds, for the paths the widgets take elsewhere:
 *   - `jsonp`: `forceJSONP: true` (Lock's show option, auth0.js's constructor option), the
 *     path of browsers without CORS XHR: JSONP GETs instead of POSTs;
 *   - Lock without a callbackURL (`/000/lock-no-callback`, `/002/lock-no-callback`): no
 *     redirect; /oauth/ro, and the callback shows the id_token.
 */
function seedPages({ clientId, domain, callback, jsonp = false }) {
  const lockOptions = (withCallbackURL) => {
    const opts = [];
    if (withCallbackURL) opts.push(`callbackURL: '${js(callback)}'`);
    if (jsonp) opts.push('forceJSONP: true');
    return `{${opts.join(', ')}}`;
  };
  const lockPage = (mode, title, withCallbackURL = true) =>
    page(
      `${title}${withCallbackURL ? '' : ' (no callbackURL)'}${jsonp ? ' (forceJSONP)' : ''}`,
      `<script src="/vendor/lock-passwordless-2.2.3.js"></script>
<script type="text/javascript">
  function login(){
    // Initialize Passwordless Lock instance
    var lock = new Auth0LockPasswordless('${js(clientId)}', '${js(domain)}');
    // Open Lock in ${mode === 'emailcode' ? 'Email Code' : 'SMS'} mode
    lock.${mode}( ${lockOptions(withCallbackURL)}${withCallbackURL ? '' : ', showLockResult'} );
  }
</script>
<a href="javascript:login()">Login</a>
${
  withCallbackURL
    ? ''
    : `${RESULT_HELPERS}
<script>
  function showLockResult(err, profile, id_token, access_token) {
    window.lockProfile = profile;
    showResult(err, err ? null : { idToken: id_token, accessToken: access_token, idTokenPayload: profile });
  }
</script>`
}`,
    );

  const init = (withCallbackURL) => `<script src="/vendor/jquery.js"></script>
<script src="/vendor/auth0-7.6.1.js"></script>
<script type="text/javascript">
  'use strict';
  const auth0 = new Auth0({
    clientID: '${js(clientId)}',
    domain: '${js(domain)}'${withCallbackURL ? `,\n    callbackURL: '${js(callback)}'` : ''}${jsonp ? ',\n    forceJSONP: true' : ''}
  });
  //...
</script>`;
  const variant = (withCallbackURL) => `${withCallbackURL ? 'with' : 'without'} a callbackURL${jsonp ? ' (forceJSONP)' : ''}`;

  const ownEmail = (withCallbackURL) =>
    page(
      `Seed 000: auth0.js v7, own UI, email code ${variant(withCallbackURL)}`,
      `${init(withCallbackURL)}
<div class="enter-email">
  <label>Email <input class="email" type="email" name="email"></label>
  <button type="button" id="send" onclick="sendEmail()">Send me a code</button>
</div>
<div class="enter-code" style="display:none">
  <label>Code <input class="code" name="code" autocomplete="one-time-code"></label>
  <button type="button" id="login" onclick="login()">Sign in</button>
</div>
${withCallbackURL ? '' : RESULT_HELPERS}
<script type="text/javascript">
function sendEmail(){
  var email = $('input.email').val();
  auth0.requestEmailCode( { email:email }, function(err) {
    if (err) {
      alert('error sending e-mail: '+ err.error_description);
      return;
    }
    // the request was successful and you should
    // receive the passcode to the specified email
    $('.enter-email').hide();
    $('.enter-code').show();
  });
}

function login(){
  var email = $('input.email').val();
  var code = $('input.code').val();
  //submit the passcode to authenticate the phone
  auth0.verifyEmailCode({ email: email, code: code }, function(err${withCallbackURL ? '' : ', result'}){
    if (err){
      alert('code verification failed. ' + err.statusCode + ' '+ err.error);
    }${withCallbackURL ? '' : '\n    showResult(err, result);'}
  });
};
</script>`,
    );

  const ownSms = (withCallbackURL) =>
    page(
      `Seed 002: auth0.js v7, own UI, SMS code ${variant(withCallbackURL)}`,
      `${init(withCallbackURL)}
<div class="enter-phone">
  <label>Phone number <input class="phone-number" type="tel" name="phone"></label>
  <button type="button" id="send" onclick="sendSMS()">Text me a code</button>
</div>
<div class="enter-code" style="display:none">
  <label>Code <input class="code" name="code" autocomplete="one-time-code"></label>
  <button type="button" id="login" onclick="login()">Sign in</button>
</div>
${withCallbackURL ? '' : RESULT_HELPERS}
<script type="text/javascript">
function sendSMS(){
  var phoneNumber = $('input.phone-number').val();
  auth0.requestSMSCode({ phoneNumber:phoneNumber}, function(err) {
    if (err) {
      alert('error sending SMS: '+ err.error_description);
      return;
    }
    // the request was successful and you should
    // receive the passcode to the specified phone
    $('.enter-phone').hide();
    $('.enter-code').show();
  });
}

function login(){
  var phone = $('input.phone-number').val();
  var code = $('input.code').val();
  //submit the passcode to authenticate the phone
  auth0.verifySMSCode({ phoneNumber: phone, code: code }, function(err${withCallbackURL ? '' : ', result'}){
    ${
      withCallbackURL
        ? "alert('code verification failed. ' + err.statusCode + ' '+ err.error);"
        : "if (err) alert('code verification failed. ' + err.statusCode + ' '+ err.error);\n    showResult(err, result);"
    }
  });
};
</script>`,
    );

  return {
    '/000/lock': lockPage('emailcode', 'Seed 000: Lock Passwordless v2, email code'),
    '/000/lock-no-callback': lockPage('emailcode', 'Seed 000: Lock Passwordless v2, email code', false),
    '/000/own': ownEmail(true),
    '/000/own-no-callback': ownEmail(false),
    '/002/lock': lockPage('sms', 'Seed 002: Lock Passwordless v2, SMS code'),
    '/002/lock-no-callback': lockPage('sms', 'Seed 002: Lock Passwordless v2, SMS code', false),
    '/002/own': ownSms(true),
    '/002/own-no-callback': ownSms(false),
  };
}

/**
 * The seed app: a regular web app on node:http. `/<seed>/<page>` are the seed pages
 * (`?client=modern` uses the modern application's client ID, `?client_id=X` any, `?jsonp=1`
 * adds forceJSONP), `/callback` exchanges the code server-side and shows the user.
 */
class SeedApp {
  constructor(stack) {
    this.stack = stack;
    this.name = 'seed-app';
    this.log = path.join(stack.dir, 'seed-app.log');
    this.server = null;
  }

  write(line) {
    fs.appendFileSync(this.log, `${new Date().toISOString()} ${line}\n`);
  }

  async start(port) {
    fs.writeFileSync(this.log, '');
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        this.write(`!! ${req.method} ${req.url}: ${e.stack}`);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`internal error: ${e.message}`);
      });
    });
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', resolve);
    });
    this.write(`listening on 127.0.0.1:${port}, public URL ${this.stack.app}`);
  }

  send(res, status, type, body, extra = {}) {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...extra });
    res.end(body);
  }

  async handle(req, res) {
    const url = new URL(req.url, this.stack.app);
    this.write(`-> ${req.method} ${url.pathname}${url.search}`);
    const s = this.stack;
    if (req.method !== 'GET') return this.send(res, 405, 'text/plain', 'method not allowed');
    if (VENDOR[url.pathname]) {
      return this.send(res, 200, 'text/javascript; charset=utf-8', fs.readFileSync(VENDOR[url.pathname]));
    }
    if (url.pathname === '/') {
      const links = Object.keys(seedPages({ clientId: '', domain: '', callback: '' }))
        .map((p) => `<li><a href="${p}">${p}</a></li>`)
        .join('\n');
      return this.send(res, 200, 'text/html; charset=utf-8', page('Seed app', `<ul>\n${links}\n</ul>`));
    }
    if (url.pathname === '/favicon.ico') return this.send(res, 204, 'image/x-icon', '');
    if (url.pathname === '/callback') return this.callback(url, res);
    const clientId = url.searchParams.get('client') === 'modern' ? MODERN_CLIENT_ID : (url.searchParams.get('client_id') ?? SEED_CLIENT_ID);
    const pages = seedPages({
      clientId,
      domain: s.domain,
      callback: `${s.app}/callback`,
      jsonp: url.searchParams.get('jsonp') === '1',
    });
    if (pages[url.pathname]) return this.send(res, 200, 'text/html; charset=utf-8', pages[url.pathname]);
    return this.send(res, 404, 'text/plain', 'not found');
  }

  /** The regular web app's callback: the code, exchanged with the secret, and the user shown. */
  async callback(url, res) {
    const s = this.stack;
    const q = url.searchParams;
    if (q.get('error')) {
      return this.send(
        res, 400, 'text/html; charset=utf-8',
        page('Sign-in failed', `<p id="error">${esc(q.get('error'))}: ${esc(q.get('error_description') ?? '')}</p>`),
      );
    }
    const code = q.get('code');
    if (!code) return this.send(res, 400, 'text/html; charset=utf-8', page('Sign-in failed', '<p id="error">no code</p>'));
    const form = new URLSearchParams({
      grant_type: 'authorization_code',
      client_id: SEED_CLIENT_ID,
      client_secret: s.secrets[SEED_CLIENT_ID],
      code,
      redirect_uri: `${s.app}/callback`,
    }).toString();
    const r = await httpsRequest(`${s.tessera}/oauth/token`, {
      ca: s.ca,
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(form) },
      body: form,
    });
    this.write(`   POST /oauth/token -> ${r.status} ${r.text.slice(0, 300)}`);
    if (r.status !== 200) {
      return this.send(
        res, 502, 'text/html; charset=utf-8',
        page('Sign-in failed', `<p id="error">/oauth/token answered ${r.status}</p><pre id="error-body">${esc(r.text)}</pre>`),
      );
    }
    const tokens = r.json();
    let profile = {};
    if (tokens.access_token) {
      const u = await httpsRequest(`${s.tessera}/userinfo`, {
        ca: s.ca,
        headers: { authorization: `Bearer ${tokens.access_token}` },
      });
      this.write(`   GET /userinfo -> ${u.status} ${u.text.slice(0, 300)}`);
      if (u.status === 200) profile = u.json();
    }
    const claims = JSON.parse(Buffer.from(String(tokens.id_token).split('.')[1] ?? '', 'base64url').toString('utf8') || '{}');
    const user = { ...claims, ...profile };
    const rows = [
      `<p>sub: <span id="user-sub">${esc(user.sub ?? '')}</span></p>`,
      user.email ? `<p>email: <span id="user-email">${esc(user.email)}</span></p>` : '',
      user.phone_number ? `<p>phone: <span id="user-phone">${esc(user.phone_number)}</span></p>` : '',
      `<p>state: <span id="state">${esc(q.get('state') ?? '(none)')}</span></p>`,
      `<p>id_token:</p><pre id="id-token">${esc(tokens.id_token ?? '')}</pre>`,
      `<p>userinfo:</p><pre id="userinfo">${esc(JSON.stringify(profile))}</pre>`,
    ];
    return this.send(res, 200, 'text/html; charset=utf-8', page('Signed in', rows.join('\n')));
  }

  tail(lines = 40) {
    return tailOf(this.log, lines);
  }

  async stop() {
    if (!this.server) return;
    const server = this.server;
    this.server = null;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

// ------------------------------------------------------------------------------------------
// The stack
// ------------------------------------------------------------------------------------------

export class LegacyStack extends Stack {
  constructor(name) {
    super(name);
    this.wire = [];
  }

  /** Starts everything (`only` limits it: any of 'tessera', 'app', 'browser'). */
  async start({ only } = {}) {
    const want = (what) => !only || only.includes(what);
    fs.mkdirSync(this.dir, { recursive: true });
    for (const [url, file] of Object.entries(VENDOR)) {
      if (!fs.existsSync(file)) {
        throw new Error(`${url}: ${file} is missing; run \`npm ci\` in tests/browser (its postinstall runs build-legacy.mjs)`);
      }
    }
    this.secrets = {
      [SEED_CLIENT_ID]: crypto.randomBytes(36).toString('base64url'),
      [MODERN_CLIENT_ID]: crypto.randomBytes(36).toString('base64url'),
    };
    this.tport = await freePort();
    this.aport = await freePort();
    this.domain = `localhost:${this.tport}`;
    this.tessera = `https://${this.domain}`;
    this.app = `http://localhost:${this.aport}`;
    const tls = makeCertificate(this.dir);
    this.certFile = tls.cert;
    this.keyFile = tls.key;
    this.ca = tls.ca;
    if (want('tessera')) {
      await this.startSmtp();
      await this.startTwilio();
      await this.startTessera();
    }
    if (want('app')) {
      this.seedApp = new SeedApp(this);
      await this.seedApp.start(this.aport);
      this.procs.push(this.seedApp);
    }
    if (want('browser')) await this.startBrowser();
    return this;
  }

  tesseraConfig() {
    const app = this.app;
    const application = (name, clientId, legacy) => `
[[applications]]
name = "${name}"
client_id = "${clientId}"
client_secret = "${this.secrets[clientId]}"
app_type = "regular_web"
callbacks = ["${app}/callback"]
web_origins = ["${app}"]
allow_browser_start = true
connections = ["email", "sms"]
${legacy ? 'legacy_passwordless = true\n' : '# legacy_passwordless: off (the default)\n'}`;
    return `# Written by tests/browser/legacy-harness.mjs for one test file.
issuer = "${this.tessera}/"
listen = "127.0.0.1:${this.tport}"

[tls]
cert_file = "${this.certFile}"
key_file = "${this.keyFile}"

${this.servicesConfig()}${application('Seed app', SEED_CLIENT_ID, true)}${application('Modern app', MODERN_CLIENT_ID, false)}`;
  }

  async startTessera() {
    const tessera = this.spawnTessera();
    await waitUntil('GET https://localhost/health to answer 200', STARTUP_MS, tessera, async () => {
      const r = await httpsRequest(`${this.tessera}/health`, { ca: this.ca, timeoutMs: 2000 });
      if (r.status !== 200) throw new Error(`GET /health: ${r.status}`);
      return true;
    });
  }

  /** Chromium reaches nothing but localhost (HOST_RULES). */
  startBrowser() {
    return super.startBrowser([`--host-resolver-rules=${HOST_RULES}`]);
  }

  async stop() {
    await super.stop();
    if (this.wire.length) {
      fs.writeFileSync(path.join(this.dir, 'wire-all.json'), `${JSON.stringify(this.wire, null, 2)}\n`);
    }
  }

  async codeFor(email) {
    const message = await this.waitForMail(email);
    const code = oneTimeCode(message);
    assert.ok(code, `a code in the email to ${email} (subject ${message.subject})`);
    return code;
  }

  async smsCodeFor(phone) {
    const message = await this.twilio.waitFor(phone, MAIL_MS);
    fs.writeFileSync(path.join(this.dir, `sms-${phone}.txt`), `To: ${message.to}\nFrom: ${message.from}\n\n${message.body}\n`);
    assert.equal(message.from, SMS_FROM, 'the text message comes from the configured number');
    const code = smsCode(message.body);
    assert.ok(code, `a six-digit code in the text message to ${phone}: ${message.body}`);
    return code;
  }

  verifyIdToken(idToken, opts) {
    return verifyIdToken(this, idToken, opts);
  }

  testRun(label) {
    return new LegacyRun(this, label);
  }
}

// ------------------------------------------------------------------------------------------
// One test: browser context, pages, screenshots, logs, and the wire record
// ------------------------------------------------------------------------------------------

function decodeAuth0Client(value) {
  if (!value) return undefined;
  try {
    return JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
  } catch {
    return value;
  }
}

/** `a=1&b%5Bc%5D=2` as an ordered list of [key, value], decoded (`+` is a space). */
function formPairs(text) {
  if (typeof text !== 'string') return undefined;
  return text
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const i = p.indexOf('=');
      const dec = (s) => {
        try {
          return decodeURIComponent(s.replace(/\+/g, ' '));
        } catch {
          return s;
        }
      };
      return i < 0 ? [dec(p), ''] : [dec(p.slice(0, i)), dec(p.slice(i + 1))];
    });
}

/** One recorded request as a line of the failure report. */
function wireLine(e) {
  const u = new URL(e.url);
  const sent = e.body != null ? ` [${e.contentType ?? 'no content type'}] ${e.body}` : '';
  const answer =
    e.failure !== undefined
      ? `FAILED ${e.failure}`
      : `${e.status ?? '(no answer)'} ${e.responseContentType ?? ''} ${(e.responseBody ?? e.location ?? '').slice(0, 300)}`;
  return `${e.kind === 'preflight' ? 'preflight ' : ''}${e.method} ${u.pathname}${u.search}${sent} -> ${answer}`;
}

class LegacyRun extends TestRun {
  constructor(stack, label) {
    super(stack, label);
    this.keepRecent = 80;
    this.dialogs = [];
    /** What the browser sent to Tessera (and third parties) and what came back. */
    this.wire = [];
    this.pending = new Map();
  }

  async newPage() {
    const context = await this.stack.browser.newContext({
      viewport: { width: 1100, height: 900 },
      ignoreHTTPSErrors: true,
    });
    context.setDefaultTimeout(15_000);
    context.setDefaultNavigationTimeout(20_000);
    this.contexts.push(context);
    const page = await context.newPage();
    const tag = `[page${this.pages.length + 1}]`;
    page.on('console', (msg) => this.note(`${tag} console.${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => this.note(`${tag} pageerror: ${err.message}`));
    page.on('dialog', async (dialog) => {
      this.dialogs.push(dialog.message());
      this.note(`${tag} ${dialog.type()}: ${dialog.message()}`);
      await dialog.accept().catch(() => {});
    });
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) this.note(`${tag} navigated to ${frame.url()}`);
    });
    page.on('request', (req) => this.onRequest(tag, req));
    page.on('response', (res) => this.onResponse(tag, res));
    page.on('requestfailed', (req) => {
      this.note(`${tag} FAILED ${req.method()} ${req.url()}: ${req.failure()?.errorText}`);
      const entry = this.pending.get(req);
      if (entry) entry.failure = req.failure()?.errorText;
    });
    // CORS preflights: Playwright does not report them as requests; the DevTools protocol does.
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const preflights = new Map();
    cdp.on('Network.requestWillBeSent', (e) => {
      if (e.type !== 'Preflight' && e.request.method !== 'OPTIONS') return;
      const entry = {
        at: new Date().toISOString(),
        page: tag,
        kind: 'preflight',
        method: e.request.method,
        url: e.request.url,
        path: new URL(e.request.url).pathname,
        requestHeaders: e.request.headers,
      };
      preflights.set(e.requestId, entry);
      this.wire.push(entry);
      this.note(`${tag} preflight ${e.request.method} ${e.request.url}`);
    });
    cdp.on('Network.responseReceived', (e) => {
      const entry = preflights.get(e.requestId);
      if (!entry) return;
      entry.status = e.response.status;
      entry.responseHeaders = e.response.headers;
      this.note(`${tag} preflight answered ${e.response.status}`);
    });
    cdp.on('Network.loadingFailed', (e) => {
      const entry = preflights.get(e.requestId);
      if (entry) entry.failure = `${e.errorText}${e.corsErrorStatus ? ` ${JSON.stringify(e.corsErrorStatus)}` : ''}`;
    });
    this.pages.push(page);
    return page;
  }

  onRequest(tag, req) {
    const url = new URL(req.url());
    const headers = req.headers();
    const entry = {
      at: new Date().toISOString(),
      page: tag,
      kind: req.resourceType(),
      method: req.method(),
      url: req.url(),
      origin: url.origin,
      path: url.pathname,
    };
    if (url.origin === this.stack.app) {
      // The seed app's own pages and scripts: only noted.
      this.note(`${tag} -> ${req.method()} ${req.url()}`);
      return;
    }
    if (url.search) entry.query = formPairs(url.search.slice(1));
    if (headers['content-type']) entry.contentType = headers['content-type'];
    if (headers.accept) entry.accept = headers.accept;
    if (headers['auth0-client']) entry.auth0Client = decodeAuth0Client(headers['auth0-client']);
    const body = req.postData();
    if (body != null) {
      entry.body = body;
      if (/x-www-form-urlencoded/.test(headers['content-type'] ?? '')) entry.form = formPairs(body);
    }
    this.pending.set(req, entry);
    this.wire.push(entry);
    this.note(`${tag} -> ${req.method()} ${req.url()}${body != null ? ` body=${body}` : ''}`);
  }

  async onResponse(tag, res) {
    const req = res.request();
    const location = res.headers().location ? ` -> ${res.headers().location}` : '';
    this.note(`${tag} ${res.status()} ${req.method()} ${req.url()}${location}`);
    const entry = this.pending.get(req);
    if (!entry) return;
    const h = res.headers();
    entry.status = res.status();
    if (h['content-type']) entry.responseContentType = h['content-type'];
    if (h.location) entry.location = h.location;
    if (h['access-control-allow-origin']) entry.allowOrigin = h['access-control-allow-origin'];
    const kept = Object.entries(h).filter(([k]) => /^(access-control-|strict-transport-security$|cache-control$)/.test(k));
    if (kept.length) entry.responseHeaders = Object.fromEntries(kept);
    if (res.status() >= 300 && res.status() < 400) return;
    try {
      const text = await res.text();
      entry.responseBody = text.length > 4000 ? `${text.slice(0, 4000)}…` : text;
      if (res.status() >= 400) this.note(`${tag}    body: ${text.slice(0, 500)}`);
    } catch {
      // The page navigated away before the body was read (Lock's verify → verify_redirect).
      entry.responseBodyUnavailable = true;
    }
  }

  /** The recorded requests to Tessera at `pathname` (method too, when given). */
  sent(pathname, method) {
    return this.wire.filter(
      (e) => e.kind !== 'preflight' && e.origin === this.tessera && e.path === pathname && (!method || e.method === method),
    );
  }

  /** The seed app's /callback page: waits for it, checks it, verifies its id_token. */
  async expectCallback(page, who) {
    await page.waitForURL((u) => u.href.startsWith(`${this.app}/callback?`), { timeout: 20_000 });
    await page.waitForLoadState('load');
    await this.shot(page, 'callback');
    const error = await page.locator('#error').count();
    if (error) assert.fail(`the callback failed: ${await page.locator('body').innerText()}`);
    const idToken = (await page.textContent('#id-token'))?.trim();
    const claims = await this.stack.verifyIdToken(idToken, who);
    assert.equal((await page.textContent('#user-sub'))?.trim(), claims.sub, '#user-sub');
    const userinfo = JSON.parse((await page.textContent('#userinfo')) || '{}');
    if (userinfo.sub !== undefined) assert.equal(userinfo.sub, claims.sub, '/userinfo sub');
    this.note(`verified id_token from /oauth/token: ${JSON.stringify(claims)}`);
    return claims;
  }

  /** The failure report's part for this harness: what the browser sent (saved to wire.json too). */
  failureDetails() {
    this.saveWire();
    return [
      `-------- what the browser sent to Tessera (all in ${path.join(this.dir, 'wire.json')}) --------`,
      ...this.wire.filter((e) => e.origin === this.tessera || e.kind === 'preflight').map(wireLine),
    ];
  }

  saveWire() {
    fs.writeFileSync(path.join(this.dir, 'wire.json'), `${JSON.stringify(this.wire, null, 2)}\n`);
  }

  async close() {
    this.saveWire();
    this.stack.wire.push({ test: this.label, requests: this.wire });
    await super.close();
  }
}

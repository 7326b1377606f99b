// The shared harness of the browser tests.
//
// Each test file makes one Stack: a real SMTP server (aiosmtpd, writing a Maildir), a fake
// Twilio (Messages API, in this process) for the text messages, a real Tessera process
// configured for both, the example app (examples/rwa) registered at Tessera as a regular web app
// with the email and sms connections, and headless Chromium. Every process runs in its own process group and is
// ended (by its id) when the file's tests finish, when they fail, and when Node exits.
//
// Everything a run leaves goes to tests/browser/artifacts/<run>/<file>/: each process's log,
// Tessera's configuration, each test's screenshots, and a log of the browser's console and of
// every HTTP response it received. When a test fails, the tail of each log, the browser's last
// requests and the screenshot paths are printed.
//
// Environment:
//   TESSERA_BIN          the tessera binary (default <repo>/target/debug/tessera)
//   TESSERA_EXAMPLE_BIN  the example app (default <repo>/target/debug/tessera-example)
//   CHROMIUM             the browser (default /usr/bin/chromium)
//   BROWSER_TEST_RUN     the run folder's name under artifacts/ (run.sh sets one per run)

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '../..');
const TESSERA_BIN = process.env.TESSERA_BIN || path.join(REPO, 'target/debug/tessera');
const EXAMPLE_BIN =
  process.env.TESSERA_EXAMPLE_BIN || path.join(REPO, 'target/debug/tessera-example');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SMTP_SUPPORT = path.join(REPO, 'crates/tessera/tests/support');
const RUN = process.env.BROWSER_TEST_RUN || new Date().toISOString().replace(/[:.]/g, '-');
export const ARTIFACTS = path.join(HERE, 'artifacts', RUN);

export const CLIENT_ID = 'example-rwa';
export const STARTUP_MS = 30_000;
export const MAIL_MS = 20_000;

/** The sender Tessera's sms connection is configured with (Twilio's magic test number). */
export const SMS_FROM = '+15005550006';

// ------------------------------------------------------------------------------------------
// Processes
// ------------------------------------------------------------------------------------------

/** Every process this module started and has not seen exit: ended at exit, whatever happens. */
const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => process.exit(130));
}

/** Whether `port` can be bound on 127.0.0.1 right now. */
function bindable(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A free port below the kernel's ephemeral range (32768 and up on Linux). A port the kernel
 * hands out for `listen(0)` is an ephemeral one, and between our check and the server's own
 * bind any outgoing connection (Tessera to the SMTP server, Chromium to anything) may take it:
 * a test then fails with "Address already in use". Ports below that range are never given to
 * outgoing connections, so only another listener can race us, and each test picks at random.
 */
export async function freePort() {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + crypto.randomInt(12000);
    if (await bindable(port)) return port;
  }
  throw new Error('no free port between 20000 and 32000');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The environment for a child: ours, less TESSERA_* (Tessera reads each as a config key). */
function childEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('TESSERA_') && !k.startsWith('RWA_')) env[k] = v;
  }
  return { ...env, ...extra };
}

/** A child process, in its own process group, with stdout and stderr in `log`. */
class Proc {
  constructor(name, command, args, { env, cwd, log }) {
    this.name = name;
    this.log = log;
    this.exited = null;
    const fd = fs.openSync(log, 'a');
    this.child = spawn(command, args, {
      cwd,
      env,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    fs.closeSync(fd);
    running.add(this.child);
    this.exitPromise = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        running.delete(this.child);
        this.exited = { code, signal };
        resolve(this.exited);
      });
      this.child.on('error', (err) => {
        running.delete(this.child);
        this.exited = { code: null, signal: null, error: err };
        resolve(this.exited);
      });
    });
  }

  /** SIGTERM to the process group, then SIGKILL if it is still there after 5 s. */
  async stop() {
    if (this.exited) return;
    try {
      process.kill(-this.child.pid, 'SIGTERM');
    } catch {
      return;
    }
    const done = await Promise.race([this.exitPromise, sleep(5000).then(() => null)]);
    if (!done) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      await this.exitPromise;
    }
  }

  tail(lines = 40) {
    return tailOf(this.log, lines);
  }
}

export function tailOf(file, lines) {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.split('\n').slice(-lines - 1).join('\n');
  } catch (e) {
    return `<no log: ${e.message}>`;
  }
}

export async function waitUntil(what, timeoutMs, proc, check) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  for (;;) {
    if (proc?.exited) {
      throw new Error(
        `${proc.name} exited (${JSON.stringify(proc.exited)}) before ${what}. Its log (${proc.log}):\n${proc.tail(60)}`,
      );
    }
    try {
      if (await check()) return;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) {
      const log = proc ? `\nIts log (${proc.log}):\n${proc.tail(60)}` : '';
      throw new Error(`timed out waiting for ${what} (${last})${log}`);
    }
    await sleep(100);
  }
}

function portAccepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function httpOk(url) {
  const r = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(2000) });
  await r.arrayBuffer();
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status}`);
  return true;
}

// ------------------------------------------------------------------------------------------
// Mail: the Maildir aiosmtpd writes, read as MIME
// ------------------------------------------------------------------------------------------

function splitHeadBody(raw) {
  const m = /\r?\n\r?\n/.exec(raw);
  return m ? [raw.slice(0, m.index), raw.slice(m.index + m[0].length)] : [raw, ''];
}

/** Decodes RFC 2047 encoded words (`=?utf-8?q?…?=`, `=?utf-8?b?…?=`). */
function decodeWords(value) {
  return value
    .replace(/\?=\s+=\?/g, '?==?')
    .replace(/=\?([^?]+)\?([qQbB])\?([^?]*)\?=/g, (_, charset, enc, text) => {
      const bytes =
        enc.toLowerCase() === 'b'
          ? Buffer.from(text, 'base64')
          : qpBytes(text.replace(/_/g, ' '));
      return decodeCharset(bytes, charset);
    });
}

function parseHeaders(head) {
  const headers = {};
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const name = line.slice(0, i).trim().toLowerCase();
    headers[name] ??= decodeWords(line.slice(i + 1).trim());
  }
  return headers;
}

function param(headerValue, name) {
  const m = new RegExp(`;\\s*${name}\\s*=\\s*("([^"]*)"|[^;\\s]+)`, 'i').exec(headerValue || '');
  return m ? (m[2] ?? m[1]) : undefined;
}

/** Quoted-printable (a latin1 string of the raw bytes) to bytes. */
function qpBytes(text) {
  const s = text.replace(/=\r?\n/g, '');
  const out = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out.push(s.charCodeAt(i) & 0xff);
    }
  }
  return Buffer.from(out);
}

function decodeCharset(bytes, charset = 'utf-8') {
  try {
    return new TextDecoder(charset.toLowerCase()).decode(bytes);
  } catch {
    return bytes.toString('utf8');
  }
}

/** Collects the text/plain and text/html parts of a MIME entity (raw: a latin1 string). */
function collectParts(headers, body, out) {
  const type = (headers['content-type'] || 'text/plain').toLowerCase();
  if (type.startsWith('multipart/')) {
    const boundary = param(headers['content-type'], 'boundary');
    if (!boundary) return;
    const chunks = body.split(`--${boundary}`);
    for (const chunk of chunks.slice(1)) {
      if (chunk.startsWith('--')) break;
      const [h, b] = splitHeadBody(chunk.replace(/^\r?\n/, ''));
      collectParts(parseHeaders(h), b, out);
    }
    return;
  }
  const encoding = (headers['content-transfer-encoding'] || '7bit').toLowerCase();
  let bytes;
  if (encoding === 'quoted-printable') bytes = qpBytes(body);
  else if (encoding === 'base64') bytes = Buffer.from(body.replace(/\s+/g, ''), 'base64');
  else bytes = Buffer.from(body, 'latin1');
  const text = decodeCharset(bytes, param(headers['content-type'], 'charset'));
  if (type.startsWith('text/plain')) out.text ??= text;
  else if (type.startsWith('text/html')) out.html ??= text;
}

export function parseMessage(buffer) {
  const raw = buffer.toString('latin1');
  const [head, body] = splitHeadBody(raw);
  const headers = parseHeaders(head);
  const parts = {};
  collectParts(headers, body, parts);
  return { headers, subject: headers.subject || '', text: parts.text, html: parts.html };
}

const LINK_RE = /https?:\/\/[^\s<>"'()[\]]+\/passwordless\/verify_redirect\?[^\s<>"'()[\]]+/;

/** The magic link in a message: from the text part, else from the HTML part. */
export function magicLink(message) {
  const fromText = message.text && LINK_RE.exec(message.text);
  if (fromText) return fromText[0].replace(/[.,;]+$/, '');
  const fromHtml = message.html && LINK_RE.exec(message.html);
  if (fromHtml) return fromHtml[0].replace(/&amp;/g, '&');
  return null;
}

/** The one-time code in a message: the subject starts with it; else the text's first number. */
export function oneTimeCode(message) {
  const m = /^(\d{4,10})\b/.exec(message.subject) || /\b(\d{4,10})\b/.exec(message.text || '');
  return m ? m[1] : null;
}

// ------------------------------------------------------------------------------------------
// Text messages: a fake Twilio
// ------------------------------------------------------------------------------------------

const TWILIO_PATH = /^\/2010-04-01\/Accounts\/([^/]+)\/Messages\.json$/;
const E164 = /^\+[1-9][0-9]{1,14}$/;

/**
 * Twilio's Messages API (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`), checking each
 * request as Twilio does: the account in the path and HTTP basic auth (`sid:token`), a form body
 * (application/x-www-form-urlencoded) with `To`, `Body`, and exactly one of `From` and
 * `MessagingServiceSid`, and a `To` in E.164. It answers Twilio's error JSON
 * (`{code, message, more_info, status}`) for what Twilio refuses, 201 with the message resource
 * otherwise, and keeps every accepted message (and every refused request) for the tests.
 *
 * It has the shape of a Proc (name, log, tail(), stop()), so the Stack logs and stops it too.
 */
export class FakeTwilio {
  constructor({ log, accountSid, authToken }) {
    this.name = 'fake-twilio';
    this.log = log;
    this.accountSid = accountSid ?? `AC${crypto.randomBytes(16).toString('hex')}`;
    this.authToken = authToken ?? crypto.randomBytes(16).toString('hex');
    /** Accepted messages: {sid, to, from, messagingServiceSid, body, at}. */
    this.messages = [];
    /** Refused requests: {status, code, message, method, path, form}. */
    this.refused = [];
    this.seen = new Set();
    this.server = null;
    this.url = null;
  }

  async start() {
    fs.writeFileSync(this.log, '');
    this.server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        try {
          this.handle(req, Buffer.concat(chunks).toString('utf8'), res);
        } catch (e) {
          this.write(`!! ${req.method} ${req.url}: ${e.stack}`);
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ code: 20500, message: 'Internal Server Error', status: 500 }));
        }
      });
    });
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', resolve);
    });
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    this.write(`listening on ${this.url} (account ${this.accountSid})`);
    return this;
  }

  write(line) {
    fs.appendFileSync(this.log, `${new Date().toISOString()} ${line}\n`);
  }

  /** Twilio's error body. */
  error(res, req, form, status, code, message) {
    const body = {
      code,
      message,
      more_info: `https://www.twilio.com/docs/errors/${code}`,
      status,
    };
    this.refused.push({ status, code, message, method: req.method, path: req.url, form });
    this.write(`<- ${status} ${JSON.stringify(body)}`);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(body));
  }

  handle(req, text, res) {
    const url = new URL(req.url, 'http://twilio.invalid');
    this.write(`-> ${req.method} ${url.pathname} content-type=${req.headers['content-type'] ?? '(none)'} body=${text}`);
    const m = TWILIO_PATH.exec(url.pathname);
    if (!m) {
      return this.error(res, req, null, 404, 20404, `The requested resource ${url.pathname} was not found`);
    }
    if (req.method !== 'POST') {
      return this.error(res, req, null, 405, 20004, 'Method not allowed');
    }
    // Twilio authenticates the account in the path with HTTP basic auth: sid:token.
    const expected = `Basic ${Buffer.from(`${this.accountSid}:${this.authToken}`).toString('base64')}`;
    const given = req.headers.authorization ?? '';
    const sameAuth =
      given.length === expected.length && crypto.timingSafeEqual(Buffer.from(given), Buffer.from(expected));
    if (decodeURIComponent(m[1]) !== this.accountSid || !sameAuth) {
      return this.error(res, req, null, 401, 20003, 'Authenticate');
    }
    const mediaType = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (mediaType !== 'application/x-www-form-urlencoded') {
      return this.error(res, req, null, 400, 21601, 'Unsupported content type');
    }
    const params = new URLSearchParams(text);
    const form = Object.fromEntries(params);
    for (const key of new Set(params.keys())) {
      if (params.getAll(key).length > 1) {
        return this.error(res, req, form, 400, 21610, `Parameter ${key} was given more than once`);
      }
    }
    const to = params.get('To');
    const body = params.get('Body');
    const from = params.get('From');
    const service = params.get('MessagingServiceSid');
    if (!to) return this.error(res, req, form, 400, 21604, "A 'To' phone number is required.");
    if (body === null || body === '') return this.error(res, req, form, 400, 21602, 'Message body is required.');
    if ((from === null) === (service === null)) {
      return this.error(res, req, form, 400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required");
    }
    if (!E164.test(to)) {
      return this.error(res, req, form, 400, 21211, `The 'To' number ${to} is not a valid phone number.`);
    }
    if ([...body].length > 1600) {
      return this.error(res, req, form, 400, 21617, 'The concatenated message body exceeds the 1600 character limit.');
    }
    const sid = `SM${crypto.randomBytes(16).toString('hex')}`;
    this.messages.push({ sid, to, from, messagingServiceSid: service, body, at: Date.now() });
    const answer = {
      sid,
      account_sid: this.accountSid,
      status: 'queued',
      to,
      from,
      messaging_service_sid: service,
      body,
      num_segments: '1',
      direction: 'outbound-api',
      date_created: new Date().toUTCString(),
      uri: `/2010-04-01/Accounts/${this.accountSid}/Messages/${sid}.json`,
    };
    this.write(`<- 201 ${JSON.stringify(answer)}`);
    res.writeHead(201, { 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(answer));
  }

  /** The next message to `to` that no earlier call returned, waiting for it to arrive. */
  async waitFor(to, timeoutMs = MAIL_MS) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find((msg) => msg.to === to && !this.seen.has(msg.sid));
      if (found) {
        this.seen.add(found.sid);
        return found;
      }
      if (Date.now() > deadline) {
        const refused = this.refused.map((r) => `${r.status} ${r.code} ${r.message}`).join('; ');
        throw new Error(
          `no text message to ${to} arrived within ${timeoutMs} ms ` +
            `(${this.messages.length} accepted; refused: ${refused || 'none'}; log ${this.log})`,
        );
      }
      await sleep(50);
    }
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

/**
 * The one-time code in a text message: its first six-digit number. When the message ends with
 * the WebOTP line (`@host #code`), that code must be the same.
 */
export function smsCode(body) {
  const m = /(?<![0-9])([0-9]{6})(?![0-9])/.exec(body);
  if (!m) return null;
  const autofill = /\n@[^\s#]+ #([0-9]+)\s*$/.exec(body);
  if (autofill) assert.equal(autofill[1], m[1], `the WebOTP line's code is the message's code: ${body}`);
  return m[1];
}

// ------------------------------------------------------------------------------------------
// Tokens
// ------------------------------------------------------------------------------------------

/**
 * The part of an id_token's check that every harness shares: RS256 against the JWKS that
 * `getJwks()` fetches (a response with `status` and `json()`), then `iss` (`${tessera}/`), `aud`
 * (includes `clientId`), `exp` and `iat`. Answers the claims.
 */
export async function verifySignature(idToken, { tessera, clientId, getJwks }) {
  const parts = String(idToken).trim().split('.');
  assert.equal(parts.length, 3, `not a JWS compact token: ${idToken}`);
  const [h, p, s] = parts;
  const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
  assert.equal(header.alg, 'RS256', 'id_token alg');
  const jwksResponse = await getJwks();
  assert.equal(jwksResponse.status, 200, 'GET /.well-known/jwks.json');
  const jwks = await jwksResponse.json();
  const jwk = header.kid ? jwks.keys.find((k) => k.kid === header.kid) : jwks.keys[0];
  assert.ok(jwk, `key ${header.kid} is in the JWKS (${jwks.keys.map((k) => k.kid)})`);
  const key = crypto.createPublicKey({ key: { kty: jwk.kty, n: jwk.n, e: jwk.e }, format: 'jwk' });
  const ok = crypto.verify('sha256', Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'));
  assert.ok(ok, 'the id_token signature verifies with the JWKS key');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  assert.equal(claims.iss, `${tessera}/`, 'iss');
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  assert.ok(aud.includes(clientId), `aud ${JSON.stringify(claims.aud)} includes ${clientId}`);
  const now = Math.floor(Date.now() / 1000);
  assert.ok(Number.isInteger(claims.exp) && claims.exp > now, `exp ${claims.exp} is in the future`);
  if (claims.iat !== undefined) assert.ok(claims.iat <= now + 60, `iat ${claims.iat} is not in the future`);
  return claims;
}

/**
 * Verifies an id_token as an independent party would: RS256 against Tessera's JWKS. The user is
 * an email user (`email`) or, given `phone`, a user of the sms connection (`phone_number`,
 * verified, and no email).
 */
export async function verifyIdToken(idToken, { tessera, clientId, email, phone }) {
  const claims = await verifySignature(idToken, {
    tessera,
    clientId,
    getJwks: () => fetch(`${tessera}/.well-known/jwks.json`),
  });
  if (phone !== undefined) {
    assert.equal(claims.phone_number, phone, 'phone_number');
    assert.equal(claims.phone_number_verified, true, 'phone_number_verified');
    assert.equal(claims.email, undefined, 'no email claim for an sms user');
    assert.ok(String(claims.sub).startsWith('sms|'), `sub ${claims.sub} is an sms| user`);
  } else {
    assert.equal(claims.email, email, 'email');
  }
  assert.ok(typeof claims.sub === 'string' && claims.sub.length > 0, 'sub');
  return claims;
}

// ------------------------------------------------------------------------------------------
// The stack
// ------------------------------------------------------------------------------------------

export class Stack {
  /** `name` names the artifacts folder (one per test file). */
  constructor(name) {
    this.name = name;
    this.dir = path.join(ARTIFACTS, name);
    this.procs = [];
    this.seenMail = new Set();
    this.twilio = null;
    this.browser = null;
  }

  /** Starts SMTP, Tessera, the app and the browser (`only` limits it, e.g. ['app']). */
  async start({ only } = {}) {
    const want = (what) => !only || only.includes(what);
    fs.mkdirSync(this.dir, { recursive: true });
    this.clientSecret = crypto.randomBytes(36).toString('base64url'); // 48 characters
    this.tport = await freePort();
    this.aport = await freePort();
    this.tessera = `http://localhost:${this.tport}`;
    this.app = `http://localhost:${this.aport}`;
    if (want('tessera')) {
      await this.startSmtp();
      await this.startTwilio();
      await this.startTessera();
    }
    if (want('app')) await this.startApp();
    if (want('browser')) await this.startBrowser();
    return this;
  }

  async startSmtp() {
    this.sport = await freePort();
    this.maildir = path.join(this.dir, 'maildir');
    const smtp = new Proc(
      'aiosmtpd',
      'python3',
      ['-m', 'aiosmtpd', '-n', '-c', 'flaky_smtp.Flaky', this.maildir, 'ok', '-l', `127.0.0.1:${this.sport}`],
      { env: childEnv({ PYTHONPATH: SMTP_SUPPORT }), cwd: this.dir, log: path.join(this.dir, 'aiosmtpd.log') },
    );
    this.procs.push(smtp);
    await waitUntil('the SMTP server to listen', STARTUP_MS, smtp, () => portAccepts(this.sport));
  }

  async startTwilio() {
    this.twilio = await new FakeTwilio({ log: path.join(this.dir, 'fake-twilio.log') }).start();
    this.procs.push(this.twilio);
  }

  tesseraConfig() {
    const app = this.app;
    return `# Written by tests/browser/harness.mjs for one test file.
issuer = "${this.tessera}/"
listen = "127.0.0.1:${this.tport}"

${this.servicesConfig()}
[[applications]]
name = "Example RWA"
client_id = "${CLIENT_ID}"
client_secret = "${this.clientSecret}"
app_type = "regular_web"
callbacks = ["${app}/callback"]
web_origins = ["${app}"]
allowed_logout_urls = ["${app}/"]
allow_browser_start = true
connections = ["email", "sms"]
`;
  }

  /** The configuration's SMTP, connections, rate limits, outbox and log sections. */
  servicesConfig() {
    return `[email]
from = "Tessera <login@tessera.test>"
smtp_url = "smtp://127.0.0.1:${this.sport}?tls=none"

[connections.email]
magic_link_confirmation = "auto"

[connections.sms]
from = "${SMS_FROM}"

[connections.sms.twilio]
account_sid = "${this.twilio.accountSid}"
auth_token = "${this.twilio.authToken}"
api_base = "${this.twilio.url}"

[rate_limits]
start_per_ip = 10000
start_per_identifier = 100
start_per_client = 100000
failed_attempts_per_identifier = 100
token_per_ip = 10000

[outbox]
poll_interval_ms = 100

[log]
level = "info,sqlx=warn"
`;
  }

  async startTessera() {
    const tessera = this.spawnTessera();
    await waitUntil('GET /health to answer 200', STARTUP_MS, tessera, () =>
      httpOk(`http://127.0.0.1:${this.tport}/health`),
    );
  }

  /** Writes Tessera's configuration and starts it (not waiting for it); the Proc. */
  spawnTessera() {
    if (!fs.existsSync(TESSERA_BIN)) {
      throw new Error(`no tessera binary at ${TESSERA_BIN}: run \`cargo build -p tessera\` (or set TESSERA_BIN)`);
    }
    const config = path.join(this.dir, 'tessera.toml');
    fs.writeFileSync(config, this.tesseraConfig());
    const tessera = new Proc(
      'tessera',
      TESSERA_BIN,
      ['serve', '--config', config, '--data-dir', path.join(this.dir, 'data')],
      { env: childEnv(), cwd: this.dir, log: path.join(this.dir, 'tessera.log') },
    );
    this.procs.push(tessera);
    return tessera;
  }

  async startApp() {
    if (!fs.existsSync(EXAMPLE_BIN)) {
      throw new Error(
        `no example app at ${EXAMPLE_BIN}: run \`cargo build -p tessera-example\` (or set TESSERA_EXAMPLE_BIN)`,
      );
    }
    const app = new Proc(
      'tessera-example',
      EXAMPLE_BIN,
      [
        '--tessera', this.tessera,
        '--client-id', CLIENT_ID,
        '--listen', `127.0.0.1:${this.aport}`,
        '--public-url', this.app,
        '--vendor-dir', HERE,
      ],
      {
        env: childEnv({ RWA_CLIENT_SECRET: this.clientSecret, RUST_LOG: 'info' }),
        cwd: this.dir,
        log: path.join(this.dir, 'example-app.log'),
      },
    );
    this.procs.push(app);
    await waitUntil('the example app to answer', STARTUP_MS, app, () =>
      httpOk(`http://127.0.0.1:${this.aport}/`),
    );
  }

  /** Launches headless Chromium; `extraArgs` go after the usual switches. */
  async startBrowser(extraArgs = []) {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}`);
    this.browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-quic',
        '--no-first-run',
        '--disable-component-update',
        '--disable-sync',
        ...extraArgs,
      ],
    });
  }

  async stop() {
    if (this.browser) {
      await this.browser.close().catch(() => {});
      this.browser = null;
    }
    await Promise.all(this.procs.map((p) => p.stop()));
  }

  logTails(lines = 40) {
    return this.procs
      .map((p) => `----- ${p.name} (${p.log}), last ${lines} lines -----\n${p.tail(lines)}`)
      .join('\n');
  }

  /** The next message to `to` that no earlier call returned, waiting for it to arrive. */
  async waitForMail(to, timeoutMs = MAIL_MS) {
    const dir = path.join(this.maildir, 'new');
    const deadline = Date.now() + timeoutMs;
    const wanted = to.toLowerCase();
    for (;;) {
      let files = [];
      try {
        files = fs.readdirSync(dir);
      } catch {
        // not made yet
      }
      const found = files
        .filter((f) => !this.seenMail.has(f))
        .map((f) => ({ f, stat: fs.statSync(path.join(dir, f)) }))
        .sort((a, b) => a.stat.mtimeMs - b.stat.mtimeMs)
        .map(({ f }) => ({ f, message: parseMessage(fs.readFileSync(path.join(dir, f))) }))
        .find(({ message }) => (message.headers.to || '').toLowerCase().includes(wanted));
      if (found) {
        this.seenMail.add(found.f);
        fs.writeFileSync(path.join(this.dir, `mail-${wanted}.txt`), formatMessage(found.message));
        return found.message;
      }
      if (Date.now() > deadline) {
        throw new Error(`no email to ${to} arrived within ${timeoutMs} ms (Maildir ${dir})`);
      }
      await sleep(100);
    }
  }

  async codeFor(to) {
    const message = await this.waitForMail(to);
    const code = oneTimeCode(message);
    assert.ok(code, `a code in the email to ${to}:\n${formatMessage(message)}`);
    return code;
  }

  /** The next text message to `to` (E.164) at the fake Twilio, waiting for it to arrive. */
  async waitForSms(to, timeoutMs = MAIL_MS) {
    const message = await this.twilio.waitFor(to, timeoutMs);
    fs.writeFileSync(path.join(this.dir, `sms-${to}.txt`), formatSms(message));
    return message;
  }

  /** The six-digit code in the next text message to `to`. */
  async smsCodeFor(to) {
    const message = await this.waitForSms(to);
    assert.equal(message.from, SMS_FROM, 'the text message comes from the configured number');
    const code = smsCode(message.body);
    assert.ok(code, `a six-digit code in the text message to ${to}:\n${formatSms(message)}`);
    return code;
  }

  async linkFor(to) {
    const message = await this.waitForMail(to);
    const link = magicLink(message);
    assert.ok(link, `a /passwordless/verify_redirect link in the email to ${to}:\n${formatMessage(message)}`);
    assert.ok(link.startsWith(`${this.tessera}/`), `the link ${link} points at Tessera (${this.tessera})`);
    return link;
  }

  /** Runs one test with a fresh browser context, printing diagnostics if it fails. */
  async run(label, fn) {
    const t = this.testRun(label);
    try {
      await fn(t);
    } catch (err) {
      await t.fail(err);
      throw err;
    } finally {
      await t.close();
    }
  }

  /** The TestRun that run() gives each test. */
  testRun(label) {
    return new TestRun(this, label);
  }
}

function formatSms(m) {
  return `To: ${m.to}\nFrom: ${m.from ?? `(service ${m.messagingServiceSid})`}\nSid: ${m.sid}\n\n${m.body}\n`;
}

function formatMessage(m) {
  return `Subject: ${m.subject}\nTo: ${m.headers.to}\n\n--- text ---\n${m.text ?? '(none)'}\n--- html ---\n${m.html ?? '(none)'}\n`;
}

/** One test: its browser contexts, pages, screenshots and logs. */
export class TestRun {
  constructor(stack, label) {
    this.stack = stack;
    this.label = label;
    this.dir = path.join(stack.dir, label);
    fs.mkdirSync(this.dir, { recursive: true });
    this.contexts = [];
    this.pages = [];
    this.shots = [];
    this.events = path.join(this.dir, 'browser.log');
    this.recent = [];
    /** How many of the latest browser events note() keeps for the failure report. */
    this.keepRecent = 60;
    this.shotCount = 0;
  }

  get tessera() {
    return this.stack.tessera;
  }

  get app() {
    return this.stack.app;
  }

  note(line) {
    const stamped = `${new Date().toISOString()} ${line}`;
    fs.appendFileSync(this.events, `${stamped}\n`);
    this.recent.push(stamped);
    if (this.recent.length > this.keepRecent) this.recent.shift();
  }

  async newContext(name = `ctx${this.contexts.length + 1}`) {
    const context = await this.stack.browser.newContext({ viewport: { width: 1100, height: 900 } });
    context.setDefaultTimeout(15_000);
    context.setDefaultNavigationTimeout(20_000);
    context.name = name;
    this.contexts.push(context);
    return context;
  }

  /** A page in `context` (a new context when none is given), with its traffic logged. */
  async newPage(context) {
    const ctx = context || (await this.newContext());
    const page = await ctx.newPage();
    const tag = `[${ctx.name}]`;
    page.on('console', (msg) => this.note(`${tag} console.${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => this.note(`${tag} pageerror: ${err.message}`));
    page.on('requestfailed', (req) =>
      this.note(`${tag} FAILED ${req.method()} ${req.url()}: ${req.failure()?.errorText}`),
    );
    page.on('response', (res) => {
      const req = res.request();
      const location = res.headers().location ? ` -> ${res.headers().location}` : '';
      this.note(`${tag} ${res.status()} ${req.method()} ${req.url()}${location}`);
    });
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) this.note(`${tag} navigated to ${frame.url()}`);
    });
    this.pages.push(page);
    return page;
  }

  async shot(page, name) {
    this.shotCount += 1;
    const file = path.join(this.dir, `${String(this.shotCount).padStart(2, '0')}-${name}.png`);
    try {
      await page.screenshot({ path: file, fullPage: true });
      this.shots.push(file);
    } catch (e) {
      this.note(`screenshot ${name} failed: ${e.message}`);
    }
    return file;
  }

  /**
   * Waits for the app's /profile, checks what it shows, and verifies its id_token here. `who` is
   * the email address, or `{ phone }` for a user of the sms connection.
   */
  async expectProfile(page, who) {
    const { email, phone } = typeof who === 'string' ? { email: who } : who;
    await page.waitForURL(`${this.app}/profile`, { timeout: 20_000 });
    await this.shot(page, 'profile');
    if (phone !== undefined) {
      assert.equal((await page.textContent('#user-phone'))?.trim(), phone, '#user-phone');
      assert.equal(await page.locator('#user-email').count(), 0, 'no email row for an sms user');
    } else {
      assert.equal((await page.textContent('#user-email'))?.trim(), email, '#user-email');
    }
    assert.equal((await page.textContent('#verified'))?.trim(), 'id_token verified');
    const idToken = (await page.textContent('#id-token'))?.trim();
    const claims = await verifyIdToken(idToken, {
      tessera: this.tessera,
      clientId: CLIENT_ID,
      email,
      phone,
    });
    assert.equal((await page.textContent('#user-sub'))?.trim(), claims.sub, '#user-sub');
    this.note(`verified id_token: sub=${claims.sub} email=${claims.email} phone_number=${claims.phone_number}`);
    return claims;
  }

  async fail(err) {
    for (const [i, page] of this.pages.entries()) {
      if (!page.isClosed()) await this.shot(page, `failure-page${i + 1}`);
    }
    const lines = [
      '',
      `======== ${this.stack.name} / ${this.label} failed: ${err?.message?.split('\n')[0]}`,
      ...this.pages.filter((p) => !p.isClosed()).map((p, i) => `page ${i + 1} is at ${p.url()}`),
      `-------- browser (last ${this.recent.length} events; all in ${this.events}) --------`,
      ...this.recent,
      this.stack.logTails(30),
      ...this.failureDetails(),
      '-------- screenshots --------',
      ...this.shots,
      '========',
    ];
    console.error(lines.join('\n'));
    // The CI run keeps only its output: the failure screenshots go into it too, as PNG data
    // URLs (paste one into a browser's address bar to see it).
    for (const file of this.shots.filter((f) => String(f).includes('failure-page'))) {
      try {
        const png = fs.readFileSync(String(file).trim().split(' ')[0]);
        console.error(`screenshot ${file}:\ndata:image/png;base64,${png.toString('base64')}\n`);
      } catch (e) {
        console.error(`screenshot ${file} could not be read: ${e.message}`);
      }
    }
  }

  /** More lines for the failure report, after the logs (a subclass adds its own). */
  failureDetails() {
    return [];
  }

  async close() {
    for (const context of this.contexts) await context.close().catch(() => {});
  }
}

/** The HTML of a page fetched without cookies (a link scanner's view). */
export async function fetchLikeAScanner(url, method = 'GET') {
  const r = await fetch(url, {
    method,
    redirect: 'manual',
    headers: { 'user-agent': 'Mozilla/5.0 (compatible; LinkScanner/1.0)', accept: 'text/html,*/*' },
  });
  const body = method === 'HEAD' ? '' : await r.text();
  return { status: r.status, location: r.headers.get('location'), headers: r.headers, body };
}

export function uniqueEmail(tag) {
  return `${tag}-${crypto.randomBytes(4).toString('hex')}@example.com`;
}

/**
 * A US test number that libphonenumber accepts (+1 415 555 2671, 2672, …; +1 555… numbers are
 * not valid), one per `n`.
 */
export function testPhone(n) {
  return `+1415555${String(2671 + n).padStart(4, '0')}`;
}

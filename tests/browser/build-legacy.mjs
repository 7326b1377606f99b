// Builds the browser bundles of the two old widgets that the seed pages 000 and 002 use:
//
//   Lock Passwordless 2.2.3 (npm auth0-lock-passwordless, with auth0.js 6.8.0 inside)
//     -> node_modules/auth0-lock-passwordless/build/lock-passwordless.js  (window.Auth0LockPasswordless)
//   auth0.js 7.6.1 (npm auth0-js@7.6.1, installed under the alias auth0-js-7)
//     -> node_modules/auth0-js-7/build/auth0.js                            (window.Auth0)
//
// Neither package ships the browser build that Auth0 served from its CDN: each has only its
// CommonJS sources and the browserify entry the CDN build was made from (Lock's lib/browser.js,
// auth0.js's standalone.js). This script bundles exactly those entries with esbuild, unchanged.
// legacy-harness.mjs's seed app serves the two files. It runs after build-lock.mjs on every
// `npm ci` / `npm install` (the "postinstall" script in package.json).
//
// auth0-js 6.8.0 asks for qs from a GitHub branch; package.json's "overrides" installs qs 0.6.6
// from the registry instead, whose stringify (all that shapes the wire) is the same.
import { build } from 'esbuild';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

const bundles = [
  {
    pkg: 'auth0-lock-passwordless',
    entry: 'lib/browser.js',
    out: 'build/lock-passwordless.js',
    global: 'Auth0LockPasswordless',
  },
  {
    pkg: 'auth0-js-7',
    entry: 'standalone.js',
    out: 'build/auth0.js',
    global: 'Auth0',
  },
];

for (const b of bundles) {
  const dir = join(here, 'node_modules', b.pkg);
  const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const outfile = join(dir, b.out);
  mkdirSync(dirname(outfile), { recursive: true });
  await build({
    entryPoints: [join(dir, b.entry)],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    mainFields: ['browser', 'main'],
    target: ['chrome100'],
    minify: true,
    legalComments: 'eof',
    // Both entries write to `global.window` (browserify's `global`); React 0.14 reads NODE_ENV.
    define: { 'process.env.NODE_ENV': '"production"', global: 'window' },
    banner: {
      js: `/* ${meta.name} ${meta.version} (window.${b.global}), bundled from ${b.entry} by tests/browser/build-legacy.mjs */`,
    },
    outfile,
    logLevel: 'warning',
  });
  console.log(`built ${outfile}`);
}

// Builds the browser bundle of Lock (Auth0LockPasswordless).
//
// The auth0-lock package on npm ships only its CommonJS sources (lib/), not the browser build
// that `npm run build` makes in the package's build/ folder (and that Auth0 serves from its CDN).
// This script makes that file with esbuild, at node_modules/auth0-lock/build/lock.js, where the
// example app (examples/rwa, --vendor-dir tests/browser) serves it from as /vendor/lock.js.
// It runs after every `npm ci` / `npm install` (the "postinstall" script in package.json).
//
// Lock's own browser entry (lib/browser.js) first loads core-js polyfills, which are not among
// its published dependencies; Chromium needs none of them, so the entry below only sets the
// globals that lib/browser.js sets.
import { build } from 'esbuild';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const lockDir = join(here, 'node_modules', 'auth0-lock');
const outfile = join(lockDir, 'build', 'lock.js');
const version = JSON.parse(readFileSync(join(lockDir, 'package.json'), 'utf8')).version;

const entry = `
import Auth0Lock from 'auth0-lock/lib/index.js';
import Auth0LockPasswordless from 'auth0-lock/lib/passwordless.js';
window.Auth0Lock = Auth0Lock.default || Auth0Lock;
window.Auth0LockPasswordless = Auth0LockPasswordless.default || Auth0LockPasswordless;
`;

// Lock's lib/ is CommonJS and reads `require('auth0-js').default.version`. auth0-js's "main" is a
// UMD build that fills in `exports` when there is one, but its package.json says
// "type": "module", so esbuild would bundle it as ESM, with no `exports`, and Lock would get an
// empty module. Loading that file from outside its package (a namespace of its own) lets esbuild
// see it as the CommonJS module it is.
const auth0JsAsCommonJs = {
  name: 'auth0-js-as-commonjs',
  setup(b) {
    b.onResolve({ filter: /^auth0-js$/ }, async (args) => {
      if (args.pluginData?.inner) return undefined;
      const r = await b.resolve(args.path, {
        kind: args.kind,
        resolveDir: args.resolveDir,
        importer: args.importer,
        pluginData: { inner: true },
      });
      if (r.errors.length) return { errors: r.errors };
      return { path: r.path, namespace: 'auth0-js-umd' };
    });
    b.onLoad({ filter: /.*/, namespace: 'auth0-js-umd' }, (args) => ({
      contents: readFileSync(args.path, 'utf8'),
      loader: 'js',
      resolveDir: dirname(args.path),
    }));
  },
};

mkdirSync(dirname(outfile), { recursive: true });
await build({
  stdin: { contents: entry, resolveDir: here, sourcefile: 'lock-entry.js', loader: 'js' },
  bundle: true,
  format: 'iife',
  platform: 'browser',
  mainFields: ['browser', 'main'],
  plugins: [auth0JsAsCommonJs],
  target: ['chrome100'],
  minify: true,
  legalComments: 'eof',
  define: { 'process.env.NODE_ENV': '"production"', global: 'window' },
  banner: { js: `/* auth0-lock ${version}, bundled by tests/browser/build-lock.mjs */` },
  outfile,
  logLevel: 'warning',
});
console.log(`built ${outfile}`);

// Starts the Lock passwordless widget with the values the server put in #config.
// Lock talks to Tessera directly: it loads the client configuration (/client/{id}.js), sends
// the email or the text message (/passwordless/start) and, for a code, signs in with
// /co/authenticate and a top-level /authorize that comes back to this app's /callback with an
// authorization code. With the sms connection Lock shows a phone number field with a country
// picker, whose default comes from Tessera's /user/geoloc/country.
(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('config').textContent);
  var errorBox = document.getElementById('error');

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  if (typeof window.Auth0LockPasswordless !== 'function') {
    showError('Lock did not load (/vendor/lock.js).');
    return;
  }

  var lock = new window.Auth0LockPasswordless(config.clientId, config.tessera, {
    allowedConnections: [config.connection],
    passwordlessMethod: config.method,
    configurationBaseUrl: config.tessera,
    languageBaseUrl: config.tessera,
    avatar: null,
    closable: false,
    // Lock 14.3.0 crashes when it shows the "we sent you a link" pane with autofocus on: it
    // calls querySelector on the pane's component instance (ui/box/chrome.js,
    // findAutofocusInput), React unmounts the widget, and the pane never appears.
    autofocus: false,
    theme: { logo: config.publicUrl + '/static/logo.svg', primaryColor: '#2f5d8a' },
    languageDictionary: { title: 'Example app' },
    overrides: {
      __tenant: 'tessera',
      __token_issuer: config.tessera + '/',
      __jwks_uri: config.tessera + '/.well-known/jwks.json'
    },
    auth: {
      redirectUrl: config.redirectUri,
      responseType: 'code',
      params: { scope: config.scope, state: config.state, nonce: config.nonce }
    }
  });

  lock.on('unrecoverable_error', function (err) {
    showError('Lock stopped: ' + (err && (err.description || err.message || err.error) || err));
  });
  lock.on('authorization_error', function (err) {
    showError('Sign-in failed: ' + (err && (err.errorDescription || err.error_description || err.description || err.error)));
  });

  window.addEventListener('load', function () {
    lock.show();
  });
})();

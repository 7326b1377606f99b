// "Use your own UI": our form drives auth0-js with the values the server put in #config.
// passwordlessStart asks Tessera to email a code or a link; for a code, passwordlessLogin
// signs in with /co/authenticate and a top-level /authorize that comes back to /callback.
(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('config').textContent);
  var $ = function (id) { return document.getElementById(id); };
  var errorBox = $('error');

  function showError(err) {
    var text = typeof err === 'string' ? err
      : (err && (err.description || err.errorDescription || err.error_description || err.error || err.code)) ||
        'Something went wrong.';
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.textContent = '';
    errorBox.hidden = true;
  }

  if (!window.auth0 || typeof window.auth0.WebAuth !== 'function') {
    showError('auth0-js did not load (/vendor/auth0.js).');
    return;
  }

  var webAuth = new window.auth0.WebAuth({
    domain: config.tessera,
    clientID: config.clientId,
    redirectUri: config.redirectUri,
    responseType: 'code',
    scope: config.scope,
    state: config.state,
    nonce: config.nonce,
    overrides: {
      __tenant: 'tessera',
      __token_issuer: config.tessera + '/',
      __jwks_uri: config.tessera + '/.well-known/jwks.json'
    }
  });

  var email = '';

  $('email-step').addEventListener('submit', function (event) {
    event.preventDefault();
    clearError();
    email = $('email').value.trim();
    if (!email) {
      showError('Please enter your email address.');
      return;
    }
    $('send').disabled = true;
    webAuth.passwordlessStart({ connection: 'email', send: config.method, email: email }, function (err) {
      $('send').disabled = false;
      if (err) {
        showError(err);
        return;
      }
      $('email-step').hidden = true;
      if (config.method === 'code') {
        $('sent-to').textContent = email;
        $('code-step').hidden = false;
        $('code').focus();
      } else {
        $('link-sent-to').textContent = email;
        $('check-email').hidden = false;
      }
    });
  });

  $('code-step').addEventListener('submit', function (event) {
    event.preventDefault();
    clearError();
    var code = $('code').value.trim();
    if (!code) {
      showError('Please enter the code from the email.');
      return;
    }
    $('verify').disabled = true;
    // On success the browser leaves this page (to Tessera's /authorize, then /callback); the
    // callback runs only on failure.
    webAuth.passwordlessLogin({ connection: 'email', email: email, verificationCode: code }, function (err) {
      $('verify').disabled = false;
      showError(err);
    });
  });
})();

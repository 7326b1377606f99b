// "Use your own UI": our form drives auth0-js with the values the server put in #config.
// passwordlessStart asks Tessera to email a code or a link, or (the sms connection) to text a
// code; for a code, passwordlessLogin signs in with /co/authenticate (realm: the connection) and
// a top-level /authorize that comes back to /callback.
(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('config').textContent);
  var $ = function (id) { return document.getElementById(id); };
  var errorBox = $('error');
  var bySms = config.connection === 'sms';

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

  // Who the code or link goes to: the email address, or the phone number in E.164
  // (+14155552671; spaces, dots, dashes and brackets are dropped).
  var recipient = '';
  var recipientKey = bySms ? 'phoneNumber' : 'email';

  $('start-step').addEventListener('submit', function (event) {
    event.preventDefault();
    clearError();
    if (bySms) {
      recipient = $('phone').value.replace(/[\s().-]/g, '');
      if (!/^\+[1-9][0-9]{6,14}$/.test(recipient)) {
        showError('Please enter your phone number with its country code, such as +14155552671.');
        return;
      }
    } else {
      recipient = $('email').value.trim();
      if (!recipient) {
        showError('Please enter your email address.');
        return;
      }
    }
    var options = { connection: config.connection, send: config.method };
    options[recipientKey] = recipient;
    $('send').disabled = true;
    webAuth.passwordlessStart(options, function (err) {
      $('send').disabled = false;
      if (err) {
        showError(err);
        return;
      }
      $('start-step').hidden = true;
      if (config.method === 'code') {
        $('sent-to').textContent = recipient;
        $('code-step').hidden = false;
        $('code').focus();
      } else {
        $('link-sent-to').textContent = recipient;
        $('check-email').hidden = false;
      }
    });
  });

  $('code-step').addEventListener('submit', function (event) {
    event.preventDefault();
    clearError();
    var code = $('code').value.trim();
    if (!code) {
      showError(bySms ? 'Please enter the code from the text message.' : 'Please enter the code from the email.');
      return;
    }
    var options = { connection: config.connection, verificationCode: code };
    options[recipientKey] = recipient;
    $('verify').disabled = true;
    // On success the browser leaves this page (to Tessera's /authorize, then /callback); the
    // callback runs only on failure.
    webAuth.passwordlessLogin(options, function (err) {
      $('verify').disabled = false;
      showError(err);
    });
  });
})();

// The WebOTP API (Chrome on Android): when the SMS arrives, its code fills the form and sends
// it. The message ends with "@<host> #<code>", which binds the code to this site.
(function () {
  if (!('OTPCredential' in window)) return;
  var input = document.getElementById('code');
  if (!input || !input.form) return;
  var ac = new AbortController();
  input.form.addEventListener('submit', function () { ac.abort(); });
  navigator.credentials.get({ otp: { transport: ['sms'] }, signal: ac.signal })
    .then(function (otp) {
      if (otp && otp.code) { input.value = otp.code; input.form.submit(); }
    })
    .catch(function () {});
})();

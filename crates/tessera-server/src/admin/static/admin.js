// The dashboard's one script: the email template preview follows the typing. Without it the
// editor's Preview button does the same (it posts the form into the preview frame).
'use strict';
document.addEventListener('DOMContentLoaded', function () {
  var form = document.querySelector('form[data-live-preview]');
  var button = document.getElementById('preview-button');
  if (!form || !button || typeof form.requestSubmit !== 'function') return;
  var timer = null;
  function later() {
    clearTimeout(timer);
    timer = setTimeout(function () { form.requestSubmit(button); }, 400);
  }
  form.addEventListener('input', later);
  form.addEventListener('change', later);
});

"""An SMTP server that requires STARTTLS and then AUTH (PLAIN or LOGIN) with one user.

    PYTHONPATH=<this folder> python3 auth_smtp.py MAILDIR PORT CERT KEY USER PASSWORD

Accepted mail goes to MAILDIR (and MAILDIR.raw/, MAILDIR.attempts) like flaky_smtp.Flaky.
Each authentication attempt is appended to MAILDIR + ".auth" as "ok" or "refused".
"""

import asyncio
import signal
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from flaky_smtp import Flaky


def main():
    maildir, port, cert, key, user, password = sys.argv[1:7]
    log = maildir.rstrip("/") + ".auth"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        with open(log, "a") as f:
            f.write(("ok" if ok else "refused") + "\n")
        if ok:
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Flaky(maildir),
        hostname="127.0.0.1",
        port=int(port),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    controller.start()
    loop = asyncio.new_event_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    loop.run_until_complete(stop)
    controller.stop()


if __name__ == "__main__":
    main()

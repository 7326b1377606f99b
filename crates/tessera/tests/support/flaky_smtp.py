"""An aiosmtpd handler that stores mail in a Maildir, and can fail on purpose.

    PYTHONPATH=<this folder> python3 -m aiosmtpd -n -c flaky_smtp.Flaky MAILDIR MODE -l HOST:PORT

MODE is "ok" (accept everything), "4xx:N" (answer 451 to the first N messages, then accept),
or "5xx" (reject every message with 550). Every DATA attempt is appended, with its Message-ID
and the answer given, to MAILDIR + ".attempts". Every accepted message is also kept byte for
byte in MAILDIR + ".raw/" (the Maildir copy is re-serialised, which DKIM checks cannot use).
"""

import os

from aiosmtpd.handlers import Mailbox


class Flaky(Mailbox):
    def __init__(self, mail_dir, mode="ok"):
        super().__init__(mail_dir)
        self.mode = mode
        self.failed = 0
        self.attempts = mail_dir.rstrip("/") + ".attempts"

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(*args)

    def _record(self, envelope, answer):
        message_id = "?"
        for line in envelope.content.decode("utf-8", "replace").splitlines():
            if line.lower().startswith("message-id:"):
                message_id = line.split(":", 1)[1].strip()
                break
            if not line:
                break
        with open(self.attempts, "a") as f:
            f.write(f"{message_id} {answer}\n")

    async def handle_DATA(self, server, session, envelope):
        if self.mode.startswith("4xx:") and self.failed < int(self.mode[4:]):
            self.failed += 1
            answer = "451 4.3.0 Temporary failure, try again later"
        elif self.mode == "5xx":
            answer = f"550 5.1.1 <{envelope.rcpt_tos[0]}>: Recipient address rejected"
        else:
            answer = await super().handle_DATA(server, session, envelope)
            raw_dir = self.attempts[: -len(".attempts")] + ".raw"
            os.makedirs(raw_dir, exist_ok=True)
            # Written aside, then renamed in: a test that reads the file once it appears
            # reads all of it.
            aside = raw_dir + ".writing"
            with open(aside, "wb") as f:
                f.write(envelope.original_content or envelope.content)
            os.replace(aside, os.path.join(raw_dir, f"{len(os.listdir(raw_dir))}.eml"))
        self._record(envelope, answer.split(" ", 1)[0])
        return answer

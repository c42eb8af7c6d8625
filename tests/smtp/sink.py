"""A real SMTP server on loopback for the report's email test.

Every message it accepts is written to a maildir (aiosmtpd's Mailbox
handler: one file per message in <maildir>/new). With --user and
--password-file, AUTH (PLAIN or LOGIN) with those credentials is required
before any message (over plain text: loopback only).

    python sink.py --listen 127.0.0.1:2525 --maildir DIR [--user U --password-file F]
"""

import argparse
import asyncio

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True, help="host:port")
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password-file")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    handler = Mailbox(args.maildir)
    options = {}
    if args.user:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.read().rstrip("\r\n").encode()
        user = args.user.encode()

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login == user
                and auth_data.password == password
            )
            return AuthResult(success=ok)

        options = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(loop.create_server(lambda: SMTP(handler, **options), host, int(port)))
    loop.run_forever()


if __name__ == "__main__":
    main()

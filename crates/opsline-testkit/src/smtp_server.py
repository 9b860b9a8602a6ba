"""SMTP server for opsline's tests (Debian's python3-aiosmtpd).

Every accepted message is stored in --maildir as NNNNNN.eml (the raw bytes) and NNNNNN.json
(envelope sender, recipients, whether the session was encrypted, the authenticated login).
The .json file is written last, by rename, so a reader that sees it also sees the message.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Store:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        stem = os.path.join(self.folder, "%06d" % self.count)
        raw = envelope.original_content or envelope.content
        encrypted = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        login = session.auth_data.login.decode("utf-8", "replace") if session.auth_data else None
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": encrypted,
            "auth_user": login,
        }
        write_atomically(stem + ".eml", raw)
        write_atomically(stem + ".json", json.dumps(meta).encode())
        return "250 Message accepted for delivery"


def write_atomically(path, data):
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.rename(path + ".tmp", path)


def authenticator_for(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        # handled=False makes aiosmtpd send the 535 itself (its default sends nothing); the
        # login kept in auth_data is what handle_DATA reports as the session's user.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticate


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--security", choices=["plain", "starttls", "starttls-required", "implicit"], default="plain")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user")
    args = parser.parse_args()
    # The password comes through the environment so that it does not show in `ps`.
    password = os.environ.get("OPSLINE_SMTP_PASSWORD")

    context = None
    if args.security != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    starttls = args.security in ("starttls", "starttls-required")
    options = {
        "hostname": "opsline-test",
        "tls_context": context if starttls else None,
        "require_starttls": args.security == "starttls-required",
        # With implicit TLS the whole session is encrypted, but aiosmtpd only counts STARTTLS.
        "auth_require_tls": starttls,
    }
    if args.user is not None:
        options["authenticator"] = authenticator_for(args.user, password or "")
        options["auth_required"] = True

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    store = Store(args.maildir)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(store, loop=loop, **options),
            host="127.0.0.1",
            port=args.port,
            ssl=context if args.security == "implicit" else None,
        )
    )
    print("listening on 127.0.0.1:%d" % args.port, file=sys.stderr, flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()

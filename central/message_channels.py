"""The channels messages leave by, behind one interface: e-mail over SMTP, SMS and push
through an HTTP gateway.

A channel either takes the message (returns the provider's id, if any) or raises:
- `NotSent`: it certainly did not go (connection refused, 5xx before anything was taken,
  SMTP 4xx): try again later;
- `MaybeSent`: the request went out and no answer came (a timeout, a connection dropped
  mid-reply): the gateway may have taken it, so trying again may duplicate it (counted);
- `Rejected`: the gateway refused this very message (4xx, SMTP 5xx on the recipient):
  trying again would be refused again.
Each message carries its outbox key as an idempotency key, so a gateway that keeps them
can drop the repeat itself.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import aiohttp
import aiosmtplib

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    key: str
    to: str
    subject: str
    body: str


class NotSent(Exception):
    """The channel did not take the message; try again later."""


class MaybeSent(NotSent):
    """No answer after the message went out: it may have been taken."""


class Rejected(Exception):
    """The channel refused this message for good."""


class Channel(Protocol):
    async def send(self, message: Outgoing) -> str:
        """Hand the message over; the provider's id for it ('' if none)."""
        ...


class SmtpChannel:
    """E-mail through an SMTP server (a relay of the chain's mail provider)."""

    def __init__(self, host: str, port: int, sender: str, *, username: str | None = None,
                 password: str | None = None, start_tls: bool | None = None,
                 timeout_s: float = 30.0) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password = username, password
        self.start_tls = start_tls  # None: when the server offers it
        self.timeout_s = timeout_s

    async def send(self, message: Outgoing) -> str:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        # The key as the Message-ID: a relay or a reader that de-duplicates by it drops
        # the copy a resend after a lost reply makes.
        mail["Message-ID"] = f"<{message.key.replace(':', '.')}@tillpoint>"
        mail.set_content(message.body)
        try:
            _, reply = await aiosmtplib.send(
                mail, hostname=self.host, port=self.port, username=self.username,
                password=self.password, start_tls=self.start_tls, timeout=self.timeout_s)
        except aiosmtplib.SMTPRecipientsRefused as e:
            if all(r.code >= 500 for r in e.recipients):
                raise Rejected(f"the mail server refused the recipient: {e}") from None
            raise NotSent(f"the mail server deferred the recipient: {e}") from None
        except aiosmtplib.SMTPResponseException as e:
            if e.code >= 500:
                raise Rejected(f"the mail server refused: {e.code} {e.message}") from None
            raise NotSent(f"the mail server answered {e.code}") from None
        except aiosmtplib.SMTPTimeoutError:
            raise MaybeSent("the mail server did not answer in time") from None
        except (aiosmtplib.SMTPException, OSError) as e:
            raise NotSent(f"the mail server cannot be reached: {type(e).__name__}") from None
        return reply[:200]


class HttpGatewayChannel:
    """SMS or push through a provider's HTTP API: POST {"to", "text", "key"} as JSON to
    `url`, with a bearer token and `Idempotency-Key: <key>`; 2xx is taken (its JSON `id`,
    if any, is the provider's id), 4xx refused, anything else not taken."""

    def __init__(self, url: str, token: str = "", timeout_s: float = 10.0) -> None:
        self.url, self.token = url, token
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send(self, message: Outgoing) -> str:
        headers = {"Idempotency-Key": message.key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body = {"to": message.to, "text": message.body, "key": message.key}
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session, \
                    session.post(self.url, json=body, headers=headers) as resp:
                if 200 <= resp.status < 300:
                    try:
                        answer = await resp.json(content_type=None)
                    except ValueError:
                        answer = None
                    return str(answer.get("id", "")) if isinstance(answer, dict) else ""
                if 400 <= resp.status < 500 and resp.status not in (408, 425, 429):
                    raise Rejected(f"the gateway refused the message: {resp.status}")
                raise NotSent(f"the gateway answered {resp.status}")
        except aiohttp.ClientConnectorError as e:
            raise NotSent(f"the gateway cannot be reached: {type(e).__name__}") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                TimeoutError) as e:
            raise MaybeSent(f"no answer from the gateway: {type(e).__name__}") from None
        except aiohttp.ClientError as e:
            raise NotSent(f"the gateway failed: {type(e).__name__}") from None


class LogChannel:
    """For development, where no gateway runs: each message is written to the central's log
    as the gateway would have been given it, and the last few are kept for tests to read.
    Never for production: the log would hold what was meant for the customer alone."""

    def __init__(self, name: str = "log", keep: int = 100) -> None:
        self.name = name
        self.sent: deque[Outgoing] = deque(maxlen=keep)

    async def send(self, message: Outgoing) -> str:
        log.warning("development %s channel, to %s: %s: %s", self.name, message.to,
                    message.subject, message.body)
        self.sent.append(message)
        return ""


@dataclass
class Channels:
    """The channels this central has; a message for a channel it lacks waits (backoff)
    until one is configured, never dropped."""

    email: Channel | None = None
    sms: Channel | None = None
    push: Channel | None = None

    def get(self, name: str) -> Channel | None:
        return {"email": self.email, "sms": self.sms, "push": self.push}.get(name)

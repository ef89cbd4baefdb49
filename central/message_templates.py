"""Message texts per kind and language: built-in ones, and head office's own.

A template is a subject (for e-mail) and a body, with `${name}` placeholders from the
kind's parameters (string.Template: nothing in a template can run code or reach
attributes). A template is rendered against sample parameters when it is saved, so one
that names an unknown placeholder or has a stray `$` is refused then, naming the field,
never found out at send time. Owns the message_templates table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from string import Template
from typing import Any

from central.clock import iso
from central.db import Connection
from central.errors import Refused
from protocol import bounds

# Each kind's parameters, with the sample a template is checked against, and whether it is
# advertising (38-FZ art. 18: only with prior consent) or a service message (opt-out).
KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "welcome": ("service", {"name": "Анна"}),
    "activated": ("service", {"name": "Анна", "points": 120, "day": "2026-12-01"}),
    "expiring": ("service", {"name": "Анна", "points": 80, "day": "2026-12-08",
                             "days": 7}),
    "return": ("service", {"name": "Анна", "receipt": "r-1", "clawback": 40, "refund": 100,
                           "store": "store-1"}),
    "tier": ("service", {"name": "Анна", "old_tier": "silver", "tier": "gold"}),
    "birthday": ("advertising", {"name": "Анна"}),
    "winback": ("advertising", {"name": "Анна", "days": 60}),
    "crossoffer": ("advertising", {"name": "Анна", "offer": "perfume-next",
                                   "until": "2026-12-31"}),
}

DEFAULTS: dict[tuple[str, str], tuple[str, str]] = {
    ("welcome", "ru"): ("Добро пожаловать", "${name}, добро пожаловать в программу!"),
    ("welcome", "en"): ("Welcome", "${name}, welcome to the programme!"),
    ("activated", "ru"): ("Баллы начислены", "${name}, ${points} баллов стали доступны."),
    ("activated", "en"): ("Points available", "${name}, ${points} points are now yours."),
    ("expiring", "ru"): ("Баллы сгорают", "${name}, ${points} баллов сгорят ${day}."),
    ("expiring", "en"): ("Points expiring", "${name}, ${points} points expire on ${day}."),
    ("return", "ru"): ("Возврат", "${name}, по возврату ${receipt} списано ${clawback}"
                                  " баллов, возвращено ${refund}."),
    ("return", "en"): ("Your return", "${name}, for return ${receipt}: ${clawback} points"
                                      " taken back, ${refund} given back."),
    ("tier", "ru"): ("Новый уровень", "${name}, ваш уровень теперь ${tier}."),
    ("tier", "en"): ("Your tier", "${name}, your tier is now ${tier}."),
    ("birthday", "ru"): ("С днём рождения", "${name}, с днём рождения! Для вас подарок."),
    ("birthday", "en"): ("Happy birthday", "${name}, happy birthday! A gift awaits you."),
    ("winback", "ru"): ("Мы скучаем", "${name}, давно не виделись: для вас предложение."),
    ("winback", "en"): ("We miss you", "${name}, it has been a while: an offer for you."),
    ("crossoffer", "ru"): ("Предложение для вас", "${name}, для вас предложение ${offer}"
                                                  " до ${until}."),
    ("crossoffer", "en"): ("An offer for you", "${name}, offer ${offer} is yours until"
                                               " ${until}."),
}

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"
MAX_SUBJECT = 200
MAX_BODY = 2000


@dataclass(frozen=True)
class Text:
    subject: str
    body: str


def purpose(kind: str) -> str:
    return KINDS[kind][0]


def _render(template: str, params: dict[str, Any], field: str) -> str:
    try:
        return Template(template).substitute({k: str(v) for k, v in params.items()})
    except KeyError as e:
        raise Refused(400, f"field '{field}' names an unknown placeholder ${{{e.args[0]}}};"
                           f" known: {', '.join(sorted(params))}") from None
    except ValueError:
        raise Refused(400, f"field '{field}' has a '$' that starts no placeholder"
                           " (write $$ for a dollar sign)") from None


def check(kind: object, language: object, subject: object, body: object) -> Text:
    """A template as head office gives it, rendered against its kind's sample parameters;
    Refused naming the field that is wrong."""
    # Tested as text first: a dict or a list is not hashable, and `in` a dict would raise.
    if not isinstance(kind, str) or kind not in KINDS:
        raise Refused(400, f"field 'kind' must be one of {', '.join(KINDS)}")
    if not isinstance(language, str) or language not in LANGUAGES:
        raise Refused(400, f"field 'language' must be one of {', '.join(LANGUAGES)}")
    subject = bounds.text(subject, "subject", max_len=MAX_SUBJECT, required=True)
    body = bounds.text(body, "body", max_len=MAX_BODY, required=True)
    sample = KINDS[str(kind)][1]
    _render(subject, sample, "subject")
    _render(body, sample, "body")
    return Text(subject, body)


def save(conn: Connection, kind: str, language: str, text: Text, actor: str,
         now: datetime) -> None:
    conn.execute(
        "INSERT INTO message_templates (kind, language, subject, body, updated_at, actor)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, language) DO UPDATE SET"
        " subject = excluded.subject, body = excluded.body, updated_at = excluded.updated_at,"
        " actor = excluded.actor", (kind, language, text.subject, text.body, iso(now), actor))


def listing(conn: Connection) -> list[dict[str, Any]]:
    """Every kind in every language: head office's template where saved, else built in."""
    saved = {(r["kind"], r["language"]): r for r in conn.execute(
        "SELECT * FROM message_templates")}
    out = []
    for kind in KINDS:
        for language in LANGUAGES:
            r = saved.get((kind, language))
            subject, body = (r["subject"], r["body"]) if r else DEFAULTS[(kind, language)]
            out.append({"kind": kind, "language": language, "purpose": purpose(kind),
                        "subject": subject, "body": body,
                        "placeholders": sorted(KINDS[kind][1]),
                        "updated_at": r["updated_at"] if r else None,
                        "actor": r["actor"] if r else None})
    return out


def text_for(conn: Connection, kind: str, language: str | None) -> Text:
    language = language if language in LANGUAGES else DEFAULT_LANGUAGE
    r = conn.execute("SELECT subject, body FROM message_templates WHERE kind = ? AND"
                     " language = ?", (kind, language)).fetchone()
    return Text(r["subject"], r["body"]) if r else Text(*DEFAULTS[(kind, language)])


def render(conn: Connection, kind: str, language: str | None, params: dict[str, Any]) -> Text:
    """The message's text. Saved templates were checked against every parameter of their
    kind, so this does not fail on them; safe_substitute keeps it so for a parameter a
    message from an older version lacks."""
    t = text_for(conn, kind, language)
    values = {k: str(v) for k, v in params.items()}
    return Text(Template(t.subject).safe_substitute(values),
                Template(t.body).safe_substitute(values))

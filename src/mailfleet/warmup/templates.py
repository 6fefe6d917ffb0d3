"""Natural warmup messages from a small template library, with variation.

No external service: subjects and bodies are assembled from interchangeable
parts, picked by a generator seeded with the message's tracking code, so a
message re-sent after a crash is the very same message. Every message carries
the tracking code in a header (`TRACKING_HEADER`) and, unobtrusively, in its
body, so the receiver finds it even where a provider strips unknown headers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Final

TRACKING_HEADER: Final = "X-Mailfleet-Warmup"

_GREETINGS: Final = (
    "Hi {name},",
    "Hello {name},",
    "Hey {name},",
    "Good morning {name},",
    "{name},",
)
_SUBJECTS: Final = (
    "Quick question about {topic}",
    "Following up on {topic}",
    "Notes from {day}",
    "{topic}: a thought",
    "Can we sync on {topic}?",
    "Re-reading the {topic} draft",
    "Idea for {topic}",
    "Catching up this {day}",
    "About the {topic} timeline",
    "Small update on {topic}",
)
_TOPICS: Final = (
    "the quarterly plan",
    "the onboarding doc",
    "next week's workshop",
    "the vendor shortlist",
    "the pricing page",
    "our newsletter",
    "the hiring loop",
    "the design review",
    "the partner call",
    "the budget sheet",
    "the customer survey",
    "the roadmap",
)
_DAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the week")
_OPENERS: Final = (
    "I hope your week is going well.",
    "Thanks again for the quick turnaround last time.",
    "I was going through my notes and thought of you.",
    "Hope things are calm on your side.",
    "I just got back to my desk and wanted to send this before I forget.",
)
_MIDDLES: Final = (
    "I had another look at {topic} and I think we can simplify the second part.",
    "Could you take a look at {topic} when you have a moment?",
    "I put a few questions about {topic} together; nothing urgent.",
    "We talked about {topic} briefly, and I would like to hear your view.",
    "There is a small change to {topic} that I would like to run by you.",
    "I think {topic} is nearly ready; a second pair of eyes would help.",
)
_ASKS: Final = (
    "Does {day} work for a short call?",
    "Let me know what you think.",
    "No rush, whenever you get a chance.",
    "Happy to walk you through it.",
    "Would love your thoughts before {day}.",
)
_SIGNOFFS: Final = ("Best,", "Thanks,", "Cheers,", "Kind regards,", "All the best,", "Talk soon,")
_REPLIES: Final = (
    "Thanks for the note, {name}. That sounds good to me.",
    "Appreciate you sending this over. I will take a look today.",
    "Good idea, {name}. Let's go with that.",
    "Thanks! {day} works for me.",
    "Got it, thank you. I will get back to you shortly.",
    "Makes sense to me. Thanks for keeping me in the loop.",
)


@dataclass(frozen=True)
class Party:
    email: str
    name: str

    @property
    def first_name(self) -> str:
        return (self.name.split() or [self.email.split("@", 1)[0]])[0]


def pick_subject(code: str) -> str:
    rng = random.Random(f"subject:{code}")  # noqa: S311 - variety, not a secret
    return rng.choice(_SUBJECTS).format(topic=rng.choice(_TOPICS), day=rng.choice(_DAYS))


def _body(code: str, sender: Party, receiver: Party, signature: str | None) -> str:
    rng = random.Random(f"body:{code}")  # noqa: S311 - variety, not a secret
    topic, day = rng.choice(_TOPICS), rng.choice(_DAYS)
    paragraphs = [
        rng.choice(_GREETINGS).format(name=receiver.first_name),
        " ".join(
            [
                rng.choice(_OPENERS),
                rng.choice(_MIDDLES).format(topic=topic),
                rng.choice(_ASKS).format(day=day),
            ]
        ),
        f"{rng.choice(_SIGNOFFS)}\n{sender.first_name}",
    ]
    if signature:
        paragraphs.append(signature)
    # The code in the body too, quiet, as a reference people leave in mail.
    paragraphs.append(f"Ref: {code}")
    return "\n\n".join(paragraphs) + "\n"


def _reply_body(code: str, sender: Party, receiver: Party, signature: str | None) -> str:
    rng = random.Random(f"reply:{code}")  # noqa: S311 - variety, not a secret
    paragraphs = [
        rng.choice(_REPLIES).format(name=receiver.first_name, day=rng.choice(_DAYS)),
        f"{rng.choice(_SIGNOFFS)}\n{sender.first_name}",
    ]
    if signature:
        paragraphs.append(signature)
    paragraphs.append(f"Ref: {code}")
    return "\n\n".join(paragraphs) + "\n"


def build_message(
    *,
    code: str,
    message_id: str,
    subject: str,
    sender: Party,
    receiver: Party,
    sent_at: datetime,
    signature: str | None = None,
    in_reply_to: str | None = None,
) -> EmailMessage:
    """The warmup message (or, with `in_reply_to`, the threaded reply) for `code`."""
    message = EmailMessage()
    message["From"] = formataddr((sender.name, sender.email))
    message["To"] = formataddr((receiver.name, receiver.email))
    message["Subject"] = subject
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    if in_reply_to is not None:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
        body = _reply_body(code, sender, receiver, signature)
    else:
        body = _body(code, sender, receiver, signature)
    message[TRACKING_HEADER] = code
    message.set_content(body)
    return message

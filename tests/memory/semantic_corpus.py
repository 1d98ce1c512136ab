"""Facts, paraphrased questions about them, and over a thousand distractor sentences, for retrieval tests."""

from __future__ import annotations

import itertools
import random

# (fact stored, a question asking for it in other words)
FACTS: list[tuple[str, str]] = [
    (
        "The customer is allergic to peanuts and cannot eat anything containing nuts.",
        "Does this person have any food intolerances?",
    ),
    ("Ana prefers to be contacted by email and never by phone.", "What is the best way to reach Ana?"),
    ("Refunds are paid back to the original card within five business days.", "How long until I get my money back?"),
    (
        "The office wifi password is changed on the first Monday of every month.",
        "When does the wireless network key get rotated?",
    ),
    ("Our warehouse in Rotterdam ships all European orders.", "Where do parcels for Europe leave from?"),
    (
        "The user's daughter plays the violin in the school orchestra.",
        "Which musical instrument does their child learn?",
    ),
    ("Bob is vegetarian and does not eat meat or fish.", "What sort of diet does Bob follow?"),
    (
        "Releases to production are frozen during the last week of December.",
        "Can we deploy new code over the Christmas holidays?",
    ),
    ("The client works on a 2019 ThinkPad running Ubuntu Linux.", "What computer and operating system do they use?"),
    ("Premium members get free express shipping on every order.", "Do gold tier subscribers pay for fast delivery?"),
    ("Maria's birthday is on the 14th of March.", "When should we send Maria a birthday card?"),
    (
        "The customer asked us not to leave packages with the neighbours.",
        "Where may the courier drop off a parcel if nobody is home?",
    ),
]

_PEOPLE = [
    "Liam",
    "Olivia",
    "Noah",
    "Emma",
    "Lucas",
    "Mia",
    "Ethan",
    "Zoe",
    "Omar",
    "Yuki",
    "Priya",
    "Tomas",
    "the team lead",
    "our accountant",
    "a new intern",
    "the landlord",
    "my cousin",
    "the night guard",
]
_DOING = [
    "repainted the garden fence",
    "booked a table at the Italian restaurant",
    "lost the spare car keys",
    "ran a half marathon",
    "fixed the leaking kitchen tap",
    "bought a second-hand bicycle",
    "planted tomatoes on the balcony",
    "finished the quarterly tax report",
    "adopted a grey kitten",
    "renewed the parking permit",
    "replaced the printer toner",
    "watched a documentary about whales",
    "learned to bake sourdough bread",
    "moved the meeting to the large conference room",
    "updated the spreadsheet of suppliers",
    "cleaned the aquarium",
    "ordered new office chairs",
    "visited the science museum",
    "reset the router after the storm",
    "started a chess club",
    "painted a portrait of the harbour",
    "wrote a short story about dragons",
    "organised the bookshelf",
    "tuned the old piano",
    "sold the vintage camera",
]
_WHEN = [
    "last Tuesday",
    "yesterday evening",
    "in early spring",
    "over the weekend",
    "this morning",
    "two years ago",
    "during the summer break",
    "before the audit",
    "after lunch",
]
_TOPICS = [
    "The museum opens at nine and closes at five on weekdays.",
    "Bananas ripen faster when stored next to apples.",
    "The train to Lisbon leaves from platform four.",
    "Quarterly sales rose by twelve percent in the north region.",
    "The hiking trail is closed because of a landslide.",
    "Our printer on the third floor jams with thick paper.",
    "The football match was postponed due to heavy rain.",
    "The library extended its hours during exam season.",
    "Solar panels on the roof produce most power around noon.",
    "The cafeteria serves soup every Thursday.",
]


def distractors(count: int = 1000, seed: int = 11) -> list[str]:
    """`count` distinct sentences about everyday matters (none answers a question in `FACTS`)."""
    rng = random.Random(seed)
    combos = [f"{p[0].upper()}{p[1:]} {d} {w}." for p, d, w in itertools.product(_PEOPLE, _DOING, _WHEN)]
    rng.shuffle(combos)
    return (_TOPICS + combos)[:count]

"""A generated folder of personal notes for the RAG benchmarks: deterministic, no external data.

Markdown notes (headings, lists, tasks, tables, code) and plain-text notes (journal entries,
meeting minutes, mails) of about 300 bytes to 6 KB, in topic/year folders. Text comes from
word lists per topic plus invented names (people, projects, places), so a question finds a few
files, not all of them. File N is the same for a given seed whatever else is generated, so a
corpus can be grown (`start=`) and re-indexed incrementally.

    python bench/make_corpus.py DIR --files 2000 [--seed 0] [--start 0]
"""

from __future__ import annotations

import argparse
import math
import random
import re
from pathlib import Path

MIN_BYTES, MAX_BYTES = 300, 6000
YEARS = [str(y) for y in range(2019, 2026)]
MONTHS = ("January February March April May June July August September October November "
          "December").split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

# topic: (nouns, verbs, adjectives)
TOPICS: dict[str, tuple[str, str, str]] = {
    "garden": (
        "tomato seedling compost mulch trellis greenhouse raised-bed soil aphid ladybird hedge "
        "rosemary lavender courgette squash pumpkin irrigation hose pruning shears orchard apple "
        "pear blossom frost fertiliser manure potato onion garlic strawberry raspberry weed slug "
        "nettle beehive wildflower meadow pond shed wheelbarrow spade seed-tray cuttings",
        "plant sow prune water harvest mulch repot transplant weed fertilise graft propagate "
        "compost stake thin net",
        "frost-hardy perennial organic shady sunny waterlogged sandy clay acidic overgrown "
        "drought-tolerant early late",
    ),
    "cooking": (
        "sourdough starter dough crumb oven skillet risotto stock broth saffron cumin coriander "
        "ginger garlic shallot lentil chickpea curry tagine casserole marinade vinaigrette custard "
        "meringue pastry brioche focaccia dumpling noodle miso tofu salmon anchovy lemon zest "
        "butter cream yoghurt recipe pantry spice grinder thermometer braise glaze chutney",
        "bake knead simmer roast braise whisk fold sear marinate ferment proof season reduce "
        "caramelise blanch",
        "crispy tender silky tangy smoky savoury sweet bitter gluten-free vegan leftover "
        "overproofed homemade",
    ),
    "software": (
        "deployment pipeline container cluster database migration index query schema endpoint "
        "latency throughput cache queue worker scheduler regression benchmark profiler "
        "dependency lockfile release changelog refactor test fixture mock logger tracing "
        "dashboard alert incident postmortem rollback feature-flag api gateway kubernetes "
        "terraform parser compiler websocket",
        "deploy refactor migrate profile benchmark cache shard index rollback debug release "
        "review merge rebase patch instrument",
        "flaky idempotent asynchronous concurrent stale deprecated backward-compatible "
        "memory-bound cpu-bound distributed legacy experimental",
    ),
    "finance": (
        "budget invoice receipt mortgage pension dividend portfolio index-fund bond savings "
        "account tax return deduction expense subscription insurance premium rent utilities "
        "spreadsheet forecast ledger reimbursement salary bonus allowance loan interest-rate "
        "inflation emergency-fund brokerage annuity audit quote estimate refund overdraft",
        "save invest reconcile budget forecast reimburse refinance claim deduct audit allocate "
        "rebalance cancel negotiate track",
        "quarterly annual monthly fixed variable taxable overdue recurring deductible "
        "conservative aggressive unexpected",
    ),
    "travel": (
        "itinerary passport visa ferry train hostel guesthouse luggage backpack museum cathedral "
        "harbour market trailhead campsite border airport layover ticket reservation guidebook "
        "phrasebook currency sunscreen ridge glacier fjord island lighthouse vineyard monastery "
        "canyon volcano night-train rental-car scooter souvenir postcard",
        "book pack hike explore cancel reschedule sail cycle rent visit photograph wander "
        "commute transfer check-in",
        "scenic crowded remote overnight off-season coastal mountainous rainy budget "
        "last-minute walkable charming",
    ),
    "health": (
        "appointment prescription dentist physiotherapy knee shoulder back stretch posture "
        "sleep insomnia caffeine hydration vitamin allergy pollen vaccine blood-pressure "
        "cholesterol running interval tempo marathon yoga pilates swimming diet protein fibre "
        "meditation headache migraine symptom dosage checkup treadmill rowing injury",
        "stretch rest recover train run swim track schedule rehabilitate monitor reduce "
        "increase measure meditate rehydrate",
        "chronic mild acute aerobic anaerobic sedentary restful sore inflamed daily weekly "
        "low-impact",
    ),
    "music": (
        "guitar fretboard chord scale arpeggio metronome tempo rehearsal setlist gig amplifier "
        "pedal tuner capo piano sonata etude nocturne choir harmony melody bassline drum "
        "groove synthesizer sampler mixer microphone recording overdub mastering vinyl "
        "cassette score notation ukulele violin bow rosin",
        "practise rehearse record mix master compose arrange transpose improvise tune perform "
        "sample loop strum memorise",
        "syncopated minor major modal acoustic electric distorted legato staccato upbeat "
        "melancholic polyrhythmic",
    ),
    "astronomy": (
        "telescope eyepiece refractor reflector mount tripod nebula galaxy cluster comet meteor "
        "eclipse planet moon crater saturn jupiter mars venus orion andromeda pleiades "
        "constellation star-chart dew-shield filter exposure tracking polar-alignment "
        "observatory light-pollution horizon zenith aperture magnitude spectrum",
        "observe collimate align photograph stack calibrate track sketch catalogue spot "
        "focus image log",
        "faint bright naked-eye circumpolar dark-sky overcast transparent turbulent binocular "
        "deep-sky lunar solar",
    ),
    "history": (
        "archive manuscript charter treaty dynasty empire republic revolution census parish "
        "register chronicle inscription artefact excavation fortress abbey guild merchant "
        "harbour trade-route plague famine reform parliament constitution pamphlet map "
        "genealogy ancestor emigration shipyard railway factory strike suffrage",
        "transcribe date excavate catalogue research trace digitise annotate interview "
        "cross-reference publish restore",
        "medieval early-modern colonial industrial ancient contested primary secondary "
        "handwritten illegible fragmentary",
    ),
    "home": (
        "boiler radiator thermostat insulation loft gutter roof tile damp mould paint "
        "wallpaper skirting plaster drill ladder fuse socket lightbulb dishwasher washing-machine "
        "fridge freezer extractor tap leak plumber electrician carpet floorboard window "
        "curtain blinds doorbell smoke-alarm bookshelf wardrobe",
        "repair paint sand drill fix replace insulate clean declutter rewire seal unblock "
        "assemble measure service",
        "draughty leaky noisy energy-efficient secondhand broken cosy damp loose rusty "
        "freshly-painted spare",
    ),
    "books": (
        "novel chapter protagonist narrator plot twist epilogue anthology essay poem memoir "
        "biography translation edition library bookshop reading-list annotation quote "
        "character setting theme allegory trilogy manuscript publisher review bookmark "
        "paperback hardback audiobook footnote glossary index sequel prequel",
        "read reread annotate review recommend borrow return finish abandon quote summarise "
        "translate discuss lend",
        "gripping slow-burning lyrical dense unreliable satirical bleak hopeful "
        "experimental classic forgotten acclaimed",
    ),
    "work": (
        "meeting agenda minutes roadmap milestone deadline stakeholder proposal contract "
        "client vendor onboarding handover retrospective standup workshop offsite headcount "
        "hiring interview candidate feedback review objective key-result budget invoice "
        "presentation slide spreadsheet report escalation priority backlog",
        "schedule present negotiate approve escalate delegate prioritise hire onboard "
        "review draft circulate sign postpone",
        "urgent blocked cross-functional quarterly strategic tactical remote hybrid "
        "confidential tentative overdue approved",
    ),
}

GENERAL_NOUNS = ("plan note idea question problem result reason option change list week month "
                 "weekend morning evening cost time update summary detail mistake lesson").split()
GENERAL_VERBS = "check remember try compare finish start ask decide write update order".split()
FIRST = ("Ada Bruno Chiara Dmitri Elena Farid Greta Hugo Ines Jonas Keiko Lars Maya Nikolai "
         "Olga Pablo Quinn Rosa Samir Tove Ugo Vera Wiktor Ximena Yusuf Zora Amara Bastian "
         "Cosmin Dalia").split()
LAST = ("Abernathy Brandt Castell Delacroix Eriksen Fontaine Galloway Haddad Ivanova Jansen "
        "Kowalski Lindqvist Moreau Nakamura Okafor Petrov Quintero Rahman Silva Takahashi "
        "Ulrich Varga Whitfield Yilmaz Zimmermann").split()
SYLLABLES = "ka lo ven tar mi dra sel quo ri ban tho ex yl gor pha nim zu ce vol an dre is mar ok".split()
PLACES = ("Lisbon Tromso Valparaiso Kyoto Ljubljana Tbilisi Hobart Cusco Marrakesh Bergen Porto "
          "Tallinn Cork Seville Krakow Oaxaca Hanoi Reykjavik Galway Trieste Zanzibar Bruges Split "
          "Innsbruck Quebec Dunedin Arequipa Matera Plovdiv Tartu").split()

TEMPLATES = [
    "{Person} suggested we {verb} the {noun} before {month}.",
    "The {adj} {noun} needs attention: {verb} it every {weekday} and check the {noun2}.",
    "Note to self: {verb} the {noun} and {verb2} the {noun2} by the end of the {gnoun}.",
    "We spent {num} {unit} on the {noun} during the {project} trip to {place}.",
    "After talking to {person}, the decision was to {verb} the {noun2} rather than the {noun}.",
    "The {noun} from {place} turned out {adj}, which changes the {gnoun} for {project}.",
    "Remember that the {noun} and the {noun2} should never be stored together.",
    "Last {weekday} I tried to {verb} the {noun}; it took {num} {unit} and was {adj}.",
    "Open question: is a {adj} {noun} worth it compared with a {adj2} {noun2}?",
    "{Project} status: {noun} done, {noun2} pending, {noun3} blocked on {person}.",
    "The main {gnoun} with the {noun} is that it gets {adj} after {num} {unit}.",
    "In {month} {year} we decided to {verb} the {noun} for the first time.",
    "{Person} recommends a {adj} {noun}; {person2} prefers the {noun2}.",
    "Cost of the {noun}: {num} euros, plus {num2} for the {noun2}.",
    "A good {gnoun}: {verb} the {noun} early, then {verb2} the {noun2} slowly.",
    "The {project} {noun} is kept in the {noun2} next to the {noun3}.",
    "I should {gverb} whether the {noun} in {place} is still {adj}.",
    "Lesson learned: never {verb} a {adj} {noun} without a {noun2}.",
    "{Weekday} plan: {verb} the {noun}, {verb2} the {noun2}, call {person}.",
    "The {noun} score went from {num} to {num2} after we started to {verb} it.",
]
UNITS = "minutes hours days weeks euros kilometres litres pages".split()


class Vocabulary:
    """Word pools shared by the corpus and the queries, fixed by the seed."""

    def __init__(self, seed: int = 0) -> None:
        rng = random.Random(f"vocabulary:{seed}")
        self.topics = {
            name: tuple(words.split() for words in parts) for name, parts in TOPICS.items()
        }
        self.people = [f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(300)]
        self.projects = sorted({
            "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
            for _ in range(400)
        })
        self.places = PLACES


def _fill(rng: random.Random, vocab: Vocabulary, topic: str, template: str) -> str:
    nouns, verbs, adjs = vocab.topics[topic]
    if rng.random() < 0.15:  # notes drift across topics now and then
        nouns = nouns + vocab.topics[rng.choice(list(vocab.topics))][0]
    person, person2 = rng.sample(vocab.people, 2)
    project = rng.choice(vocab.projects)
    noun, noun2, noun3 = rng.sample(nouns, 3)
    verb, verb2 = rng.sample(verbs, 2)
    adj, adj2 = rng.sample(adjs, 2)
    weekday = rng.choice(WEEKDAYS)
    values = dict(
        person=person, Person=person, person2=person2, project=project, Project=project,
        place=rng.choice(vocab.places), noun=noun, noun2=noun2, noun3=noun3, verb=verb,
        verb2=verb2, adj=adj, adj2=adj2, gnoun=rng.choice(GENERAL_NOUNS),
        gverb=rng.choice(GENERAL_VERBS), month=rng.choice(MONTHS), year=rng.choice(YEARS),
        weekday=weekday.lower(), Weekday=weekday, num=rng.randint(2, 400),
        num2=rng.randint(2, 400), unit=rng.choice(UNITS),
    )
    return template.format(**values)


def _sentence(rng: random.Random, vocab: Vocabulary, topic: str) -> str:
    return _fill(rng, vocab, topic, rng.choice(TEMPLATES))


def _paragraph(rng: random.Random, vocab: Vocabulary, topic: str) -> str:
    return " ".join(_sentence(rng, vocab, topic) for _ in range(rng.randint(2, 6)))


def _title(rng: random.Random, vocab: Vocabulary, topic: str) -> str:
    nouns, verbs, adjs = vocab.topics[topic]
    shapes = [
        lambda: f"{rng.choice(adjs).capitalize()} {rng.choice(nouns)} notes",
        lambda: f"How to {rng.choice(verbs)} the {rng.choice(nouns)}",
        lambda: f"{rng.choice(vocab.projects)}: {rng.choice(nouns)} and {rng.choice(nouns)}",
        lambda: f"{rng.choice(MONTHS)} {rng.choice(YEARS)} {rng.choice(nouns)} log",
        lambda: f"Ideas for the {rng.choice(nouns)}",
        lambda: f"{rng.choice(nouns).capitalize()} in {rng.choice(vocab.places)}",
    ]
    return rng.choice(shapes)()


def _markdown_block(rng: random.Random, vocab: Vocabulary, topic: str) -> str:
    nouns, verbs, adjs = vocab.topics[topic]
    roll = rng.random()
    if roll < 0.45:
        return _paragraph(rng, vocab, topic)
    if roll < 0.65:
        return "\n".join(f"- {_sentence(rng, vocab, topic)}" for _ in range(rng.randint(2, 6)))
    if roll < 0.75:
        return "\n".join(f"- [{rng.choice(' x')}] {rng.choice(verbs).capitalize()} the {rng.choice(nouns)}"
                         f" ({rng.choice(vocab.people)})" for _ in range(rng.randint(2, 7)))
    if roll < 0.83:
        return "\n".join(f"{i}. {_sentence(rng, vocab, topic)}" for i in range(1, rng.randint(3, 6)))
    if roll < 0.91:
        rows = [f"| {rng.choice(nouns)} | {rng.randint(1, 999)} | {rng.choice(adjs)} |"
                for _ in range(rng.randint(2, 6))]
        return "| item | amount | note |\n|---|---|---|\n" + "\n".join(rows)
    if roll < 0.96:
        return f"> {_sentence(rng, vocab, topic)}\n> — {rng.choice(vocab.people)}"
    name = rng.choice(nouns).replace("-", "_")
    return (f"```python\ndef {rng.choice(verbs).replace('-', '_')}_{name}({name}, limit={rng.randint(2, 99)}):\n"
            f"    # {_sentence(rng, vocab, topic)}\n    return sorted({name})[:limit]\n```")


def _markdown(rng: random.Random, vocab: Vocabulary, topic: str, size: int) -> str:
    nouns = vocab.topics[topic][0]
    parts = [f"# {_title(rng, vocab, topic)}", _paragraph(rng, vocab, topic)]
    length = sum(len(p) + 2 for p in parts)
    while length < size:
        if rng.random() < 0.35:
            level = "##" if rng.random() < 0.75 else "###"
            part = f"{level} {rng.choice(nouns).capitalize()} {rng.choice(GENERAL_NOUNS)}"
        else:
            part = _markdown_block(rng, vocab, topic)
        parts.append(part)
        length += len(part) + 2
    return "\n\n".join(parts) + "\n"


def _text(rng: random.Random, vocab: Vocabulary, topic: str, size: int) -> str:
    style = rng.choice(["journal", "minutes", "mail", "plain"])
    person, place = rng.choice(vocab.people), rng.choice(vocab.places)
    date = f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {rng.choice(YEARS)}"
    if style == "journal":
        head = f"{rng.choice(WEEKDAYS)}, {date} ({place})"
    elif style == "minutes":
        attendees = ", ".join(rng.sample(vocab.people, rng.randint(2, 5)))
        head = f"Minutes: {_title(rng, vocab, topic)}\nDate: {date}\nAttendees: {attendees}"
    elif style == "mail":
        head = (f"From: {person}\nSubject: Re: {_title(rng, vocab, topic)}\nDate: {date}\n\n"
                f"Hi {rng.choice(vocab.people).split()[0]},")
    else:
        head = _title(rng, vocab, topic).upper()
    parts = [head]
    length = len(head)
    while length < size:
        part = _paragraph(rng, vocab, topic)
        if style == "minutes" and rng.random() < 0.3:
            part = f"ACTION {rng.choice(vocab.people)}: {_sentence(rng, vocab, topic)}"
        parts.append(part)
        length += len(part) + 2
    if style == "mail":
        parts.append(f"Best,\n{person.split()[0]}")
    return "\n\n".join(parts) + "\n"


def note(index: int, seed: int = 0, vocab: Vocabulary | None = None) -> tuple[str, str]:
    """(relative path, text) of file number `index`: the same whatever else is generated."""
    vocab = vocab or Vocabulary(seed)
    rng = random.Random(f"note:{seed}:{index}")
    topic = rng.choice(list(vocab.topics))
    size = int(math.exp(rng.uniform(math.log(MIN_BYTES), math.log(MAX_BYTES))))
    markdown = rng.random() < 0.6
    text = _markdown(rng, vocab, topic, size) if markdown else _text(rng, vocab, topic, size)
    text = re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)
    slug = "-".join(_title(rng, vocab, topic).lower().replace(":", "").split()[:4])
    return f"{topic}/{rng.choice(YEARS)}/{slug}-{index:06d}.{'md' if markdown else 'txt'}", text


def make_corpus(folder: Path, files: int, seed: int = 0, *, start: int = 0) -> Path:
    """Write notes number `start` .. `start + files - 1` under `folder`; returns the folder."""
    folder = Path(folder)
    vocab = Vocabulary(seed)
    made: set[Path] = set()
    for index in range(start, start + files):
        relative, text = note(index, seed, vocab)
        path = folder / relative
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_text(text, encoding="utf-8")
    return folder


def make_queries(count: int, seed: int = 0) -> list[str]:
    """Varied questions about the corpus of the same seed: natural questions, keywords, names."""
    vocab = Vocabulary(seed)
    rng = random.Random(f"queries:{seed}")
    queries: list[str] = []
    while len(queries) < count:
        topic = rng.choice(list(vocab.topics))
        nouns, verbs, adjs = vocab.topics[topic]
        noun, noun2 = rng.sample(nouns, 2)
        shapes = [
            f"how do I {rng.choice(verbs)} the {noun}?",
            f"what did {rng.choice(vocab.people)} say about the {noun}",
            f"{rng.choice(vocab.projects)} {noun} status",
            f"{noun} {noun2} {rng.choice(adjs)}",
            f"when did we decide to {rng.choice(verbs)} the {noun2} in {rng.choice(MONTHS)}",
            f"how much did the {noun} cost in {rng.choice(vocab.places)}",
            f"notes about {rng.choice(adjs)} {noun}",
            f"is a {rng.choice(adjs)} {noun} better than a {rng.choice(adjs)} {noun2}",
            f"lessons learned {noun}",
            f"who recommended the {noun} and why",
            f"{rng.choice(vocab.people)}",
            f"what is pending for {rng.choice(vocab.projects)}",
        ]
        queries.append(rng.choice(shapes))
    return queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="Number of the first file (to grow a corpus).")
    args = parser.parse_args()
    make_corpus(args.folder, args.files, args.seed, start=args.start)
    paths = [p for p in args.folder.rglob("*") if p.is_file()]
    print(f"{args.folder}: {len(paths)} files, {sum(p.stat().st_size for p in paths) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

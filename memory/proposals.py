"""Spot lasting facts and preferences the user states, to propose them as long-term memories.

Deterministic on purpose: a handful of first-person patterns ("I prefer…", "my name is…",
"we decided…", "remember that…"), rewritten in the third person. Questions, hypotheticals and
passing states ("I am tired") are left alone. Nothing found here is saved until the user says yes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_WORDS, MAX_WORDS = 3, 40
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_LEAD_IN = re.compile(r"^(?:(?:also|and|btw|by the way|fyi|note|oh|ok|okay|so|well)\b[,:]?\s*)+", re.I)
_NOT_LASTING = re.compile(
    r"\b(if|would|could|might|maybe|perhaps|today|tonight|right now|at the moment|this morning|"
    r"tired|hungry|busy|sorry|sure|not sure|wondering)\b", re.I)

# (pattern on the sentence's start, kind, rewrite of the matched words)
_RULES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"^remember that\s+", re.I), "fact", ""),
    (re.compile(r"^(?:please )?(?:always|never) ", re.I), "preference", "ASKED"),
    (re.compile(r"^i (?:really |much |usually |generally )?(prefer|like|love|hate|dislike|want|"
                r"don't like|do not like|enjoy)\s+", re.I), "preference", "The user {0} "),
    (re.compile(r"^i (always|never|usually) ", re.I), "preference", "VERB"),
    (re.compile(r"^my (?:favou?rite|preferred) ", re.I), "preference", "The user's {rest_of_match}"),
    (re.compile(r"^(?:i|we) (?:have )?(decided|agreed|chose|settled on|are going with|will go with)\s+",
                re.I), "decision", "The user {0} "),
    (re.compile(r"^(?:my name is|call me)\s+", re.I), "fact", "The user's name is "),
    (re.compile(r"^my ([\w' -]{1,30}?) (is|are) ", re.I), "fact", "The user's {0} {1} "),
    (re.compile(r"^i(?: am|'m) (a|an) ", re.I), "fact", "The user is {0} "),
    (re.compile(r"^i (work|live|study|use|speak|own)\s+", re.I), "fact", "The user {0} "),
]
_VERB_S = {"prefer": "prefers", "like": "likes", "love": "loves", "hate": "hates", "dislike": "dislikes",
           "want": "wants", "don't like": "does not like", "do not like": "does not like",
           "enjoy": "enjoys", "work": "works", "live": "lives", "study": "studies", "use": "uses",
           "speak": "speaks", "own": "owns", "decided": "decided", "agreed": "agreed", "chose": "chose",
           "settled on": "settled on", "are going with": "is going with", "will go with": "will go with"}
_VAGUE = {"it", "this", "that", "them", "these", "those", "so", "too"}
_PRONOUNS = [(r"\bI am\b", "they are"), (r"\bI'm\b", "they are"), (r"\bI\b", "they"), (r"\bmy\b", "their"),
             (r"\bme\b", "them"), (r"\bmine\b", "theirs"), (r"\bmyself\b", "themselves")]


@dataclass(frozen=True)
class Proposal:
    text: str
    kind: str  # preference, fact or decision


def extract(message: str) -> list[Proposal]:
    """Lasting statements in a user's message, rewritten as memories; [] when there are none."""
    found: list[Proposal] = []
    for match in _SENTENCE.finditer(message):
        sentence = _LEAD_IN.sub("", match.group().strip())
        if sentence.endswith("?") or not MIN_WORDS <= len(sentence.split()) <= MAX_WORDS:
            continue
        proposal = _rewrite(sentence.rstrip(".!").strip())
        if proposal and proposal not in found:
            found.append(proposal)
    return found


def _rewrite(sentence: str) -> Proposal | None:
    for pattern, kind, template in _RULES:
        matched = pattern.match(sentence)
        if not matched:
            continue
        if kind != "decision" and _NOT_LASTING.search(sentence):
            return None
        rest = _third_person(sentence[matched.end():])
        if rest.lower().strip(" .!") in _VAGUE:  # "I like it": about what?
            return None
        if template == "ASKED":  # "Always answer in French"
            text = "The user asked: " + sentence[0].lower() + sentence[1:]
        elif template == "VERB":  # "I never eat meat"
            verb, _, tail = rest.partition(" ")
            text = f"The user {matched.group(1).lower()} {_third_singular(verb)} {tail}"
        elif template == "":  # "Remember that my dog is called Rex"
            inner = _rewrite(sentence[matched.end():])
            text = inner.text.rstrip(".") if inner else rest
        else:
            words = [_VERB_S.get(g.lower(), g) for g in matched.groups()]
            lead = template.replace("{rest_of_match}", _third_person(sentence[3:matched.end()]))
            text = lead.format(*words) + rest
        text = " ".join(text.split())
        return Proposal(text[0].upper() + text[1:] + ".", kind) if text else None
    return None


def _third_person(text: str) -> str:
    for pattern, replacement in _PRONOUNS:
        text = re.sub(pattern, replacement, text)
    return text


def _third_singular(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"

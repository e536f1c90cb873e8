"""Question families: a question's kind read off its first words ("what color is", "how many digits", ...).

The families are the unit every accuracy is broken down by (eval tables, the explorer's filter, the at-chance note)
and a dataset property, not a scoring rule: the data, the tasks, the report and the evaluation all ask this module.
"""

from __future__ import annotations

import re

# The VQA evaluation's question types (leading words), cut down to the openings Visual7W questions use. The longest
# matching prefix wins, so "what color is" beats "what is" and "how many" beats "how"; no entry ends in "the" except
# "what is the", so "What color is the man's shirt?" stays "what color is".
QUESTION_FAMILIES = (
    "what color is", "what color are", "what color", "what shape is", "what shape are", "what shape",
    "what is the", "what is written", "what is", "what are the", "what are", "what kind of", "what type of",
    "what time", "what color ink", "what does", "what do", "what",
    "where is", "where are", "where was", "where on the page", "where",
    "when was", "when is", "when did", "when",
    "who is", "who are", "who", "why is", "why are", "why do", "why",
    "which is the", "which object is", "which one is", "which shape is", "which box", "which digit", "which letter",
    "which character", "which",
    "how many digits", "how many letters", "how many", "how much", "how is", "how are", "how does", "how do", "how",
)  # fmt: skip
_PREFIXES = sorted((tuple(f.split()) for f in QUESTION_FAMILIES), key=len, reverse=True)


def question_words(question: str) -> list[str]:
    """Lowercase words of a question, punctuation stripped (apostrophes dropped: "man's" -> "mans")."""
    text = re.sub(r"[\u2019']", "", question.lower())
    return re.sub(r"[^\w\s]|_", " ", text).split()


def question_family(question: str) -> str:
    """The question's family: the longest ``QUESTION_FAMILIES`` entry its words start with, else its first two words
    ("other" for a question with no words). Words match whole: "whose" is not "who", "however" is not "how"."""
    words = question_words(question)
    for prefix in _PREFIXES:
        if tuple(words[: len(prefix)]) == prefix:
            return " ".join(prefix)
    return " ".join(words[:2]) or "other"

"""python-liquid's template lexer, in time linear in the length of the template.

Liquid splits a template with one regular expression, tried at every position. Two things
make that quadratic, so that a template of 50,000 characters takes minutes to compile:

- where an output, a tag or a ``raw`` or ``doc`` block opens and nothing after it closes
  it, the expression scans to the end of the text before it fails; a run of such openings
  (``{{{{{{...``) scans the rest of the text once for each of them;
- inside an output or a tag, whitespace is matched by ``\\s*`` and by a look-behind that
  backtrack against each other, once for each character of whitespace.

:func:`tokenize` gives exactly the tokens and errors of liquid's lexer (the same token
loop runs), with two changes to the expression: at each position it leaves out the
alternatives that cannot match there (no output opens where no ``}}`` follows), and its
outputs and tags match the same text, with the same groups, without backtracking.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from liquid.lex import _tokenize_template
from liquid.token import TOKEN_CONTENT, TOKEN_OUTPUT, Token

__all__ = ["tokenize"]

# Liquid's own, for the default delimiters: each is linear where it is tried (below).
_RAW = r"\{%-?\s*raw\s*(?P<rsr>-?)%\}(?P<raw>.*?)\{%-?\s*endraw\s*(?P<rsr_e>-?)%\}"
_DOC = r"\{%-?\s*doc\s*(?P<lsd>-?)%\}(?P<doc>.*?)\{%-?\s*enddoc\s*(?P<rsd>-?)%\}"
_CONTENT = r".+?(?=((\{%|\{\{)(?P<rstrip>-?))|$)"


def _words(closing: str) -> str:
    r"""Liquid's ``(?:(?!-?CLOSE)[\s\S])*(?<!\s)`` after leading whitespace: the text up to
    the closing delimiter less the whitespace before it, taken in possessive steps (a word,
    then whitespace and a word) rather than given back one character at a time."""
    word = rf"(?!-?{closing})\S"
    return rf"(?:{word}(?:\s*+{word})*+)?"


# Whitespace before an output's expression is skipped unless nothing else comes before the
# closing delimiter: then the empty expression stands where liquid's does once it has
# backtracked, right after the opening delimiter.
_OUTPUT_WORDS = _words(r"\}\}")
_OUTPUT = r"\{\{-?(?:\s++(?=(?!-?\}\})\S))?(?P<stmt>" + _OUTPUT_WORDS + r")\s*(?P<rss>-?)\}\}"
# A tag's empty expression is no token, so where it stands does not matter.
_TAG = r"\{%-?\s*(?P<name>#|\w+)\s*+(?P<expr>" + _words(r"%\}") + r")\s*(?P<rst>-?)%\}"

_ENDRAW = re.compile(r"\{%-?\s*endraw\s*-?%\}")
_ENDDOC = re.compile(r"\{%-?\s*enddoc\s*-?%\}")


@functools.cache
def _rules(raw: bool, doc: bool, output: bool, tag: bool) -> re.Pattern[str]:
    """Liquid's rules, in its order, less the alternatives that cannot match."""
    rules = [("RAW", _RAW, raw), ("DOC", _DOC, doc), (TOKEN_OUTPUT, _OUTPUT, output)]
    rules += [("TAG", _TAG, tag), (TOKEN_CONTENT, _CONTENT, True)]
    pattern = "|".join(f"(?P<{name}>{rule})" for name, rule, wanted in rules if wanted)
    return re.compile(pattern, re.DOTALL)


def _last_start(pattern: re.Pattern[str], source: str) -> int:
    return max((match.start() for match in pattern.finditer(source)), default=-1)


class _Rules:
    """Stands in for liquid's compiled rules: ``finditer`` is all its lexer asks of them."""

    def finditer(self, source: str) -> Iterator[re.Match[str]]:
        last_raw, last_doc = _last_start(_ENDRAW, source), _last_start(_ENDDOC, source)
        last_output, last_tag = source.rfind("}}"), source.rfind("%}")
        position = 0
        while position < len(source):
            # A block, output or tag that opens here needs its end after its opening.
            rules = _rules(
                last_raw > position,
                last_doc > position,
                last_output >= position + 2,
                last_tag >= position + 2,
            )
            match = rules.match(source, position)
            if match is None:  # pragma: no cover - the content rule matches any character
                return
            yield match
            position = match.end()


def tokenize(source: str) -> Iterator[Token]:
    """The tokens of ``source``, as liquid's lexer gives them (or its error)."""
    return _tokenize_template(source, rules=_Rules())  # type: ignore[arg-type]

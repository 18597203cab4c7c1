"""Message templates: Liquid source compiled once, rendered per send.

``compile_template`` parses and checks a template when the workspace is published, so
every mistake an author can make statically (syntax, an unknown filter, ``include`` or
``render``) is a :class:`TemplateError` with a 1-based line and column. ``Template.render``
then never raises: a missing variable renders empty, and a statement that fails at render
time (a filter given the wrong kind of data, a runaway loop, too much output) renders
empty while the statements around it render normally.

The scope of a render has the keys ``profile``, ``account`` (the traits of the profile's
account and its ``id``, empty when it has none), ``event``, ``entry``, ``journey``, ``now``
and, when there is one, ``message``.

A template compiled with ``escape=True`` (the ``html`` of an email) HTML-escapes every
value it outputs, quotes included, so a trait such as ``<img src=x onerror=...>`` arrives
as text; the template's own text and string literals are not escaped, and the ``safe``
filter marks a value as trusted HTML. Other templates (subjects, text, SMS) output values
as they are.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import markupsafe
from liquid import Environment, RenderContext, Token
from liquid.builtin.content import ContentNode, Literal
from liquid.exceptions import FilterValueError, LiquidError, ResourceLimitError
from liquid.filter import with_context
from liquid.output import LimitedStringIO
from liquid.template import BoundTemplate
from liquid.token import TOKEN_CONTENT, TOKEN_EXPRESSION

from journeyman.domain.template_lexer import tokenize
from journeyman.errors import JourneymanError

__all__ = ["WORK_LIMIT", "Output", "Template", "TemplateError", "compile_template", "guarded"]

# Templates cannot load other templates: a workspace template is one self-contained text.
_LOADING_TAGS = ("include", "render")

# Ceilings that stop a template before it can hurt the process. The loop limit applies to
# the product of the lengths of nested loops and is checked before a loop starts.
_OUTPUT_LIMIT = 1_000_000  # bytes of UTF-8 output
_LOOP_LIMIT = 10_000
_NAMESPACE_LIMIT = 1_000_000  # sys.getsizeof of values made by assign and capture
# Units of work of one render: a statement rendered (in a loop, once per iteration), a
# filter call (four units), and a unit per thousand characters or ten items a filter reads or makes.
# Sequential loops and filters on big strings each stay under the limits above, and
# together could run for minutes; this stops a render within a second or so, while a
# long email with a table of a hundred rows spends a few thousand.
WORK_LIMIT = 100_000
_FILTER = 4  # a filter call costs about four statements


class TemplateError(JourneymanError):
    """A template that cannot be compiled, located at a 1-based line and column."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column


class _Work:
    """What is left of one render's budget, and the caller's check (see :func:`guarded`)."""

    __slots__ = ("check", "left")

    def __init__(self, check: Callable[[], None] | None) -> None:
        self.left = WORK_LIMIT
        self.check = check

    def spend(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise ResourceLimitError(f"more than {WORK_LIMIT} units of work", token=None)
        if self.check is not None:
            self.check()


_WORK: ContextVar[_Work | None] = ContextVar("journeyman_template_work", default=None)
_CHECK: ContextVar[Callable[[], None] | None] = ContextVar("journeyman_render_check", default=None)


@contextmanager
def guarded(check: Callable[[], None]) -> Iterator[None]:
    """Renders in this block call ``check`` as they work (at each statement and
    filter call); whatever it raises stops the statement being rendered, and the next."""
    token = _CHECK.set(check)
    try:
        yield
    finally:
        _CHECK.reset(token)


def _spend(units: int) -> None:
    work = _WORK.get()
    if work is not None:
        work.spend(units)


def _size(value: object) -> int:
    """The work of a filter's reading or making ``value``: text is handled at C speed, a
    thousand characters a unit; a list's items one by one, ten a unit."""
    if isinstance(value, str):
        return len(value) // 1000
    return len(value) // 10 if isinstance(value, list | tuple | dict) else 0


class _Context(RenderContext):
    """A render's context in which every statement rendered spends a unit of work."""

    __slots__ = ("_disabled",)

    @property
    def disabled_tags(self) -> list[str]:
        # Liquid reads this as each node starts to render: the one place to count them.
        _spend(1)
        return self._disabled

    @disabled_tags.setter
    def disabled_tags(self, value: list[str]) -> None:
        self._disabled = value


class _Environment(Environment):
    output_stream_limit = _OUTPUT_LIMIT
    loop_iteration_limit = _LOOP_LIMIT
    local_namespace_limit = _NAMESPACE_LIMIT

    def __init__(self, *, autoescape: bool) -> None:
        # Strict mode and strict filters make compile errors raise; lenient rendering is
        # done per statement by Template.render, and missing variables use the default,
        # lenient Undefined. Escaping is the environment's, not the render's: filters such
        # as `safe`, `escape` and `newline_to_br` ask the environment whether to escape.
        super().__init__(autoescape=autoescape)
        self.tags[TOKEN_CONTENT] = _Literal(self)
        self.filters["date"] = _pure_date(self.filters["date"])
        for name, func in self.filters.items():
            self.filters[name] = _bounded(func)

    def tokenizer(self) -> Callable[[str], Iterator[Token]]:
        # Liquid's own lexer takes quadratic time on some texts; this one gives the same
        # tokens in linear time (template_lexer.py).
        return tokenize

    def error(
        self,
        exc: type[LiquidError] | LiquidError,
        msg: str | None = None,
        token: Token | None = None,
    ) -> None:
        # When an expression ends too early, liquid reports its end-of-expression token,
        # which has no position. The parser passes the token it was at; from it we find
        # the end of the expression being parsed, where the missing part belongs.
        if (
            isinstance(exc, LiquidError)
            and (exc.token is None or exc.token.start_index < 0)
            and token is not None
            and token.start_index >= 0
        ):
            exc.token = token._replace(start_index=self._expression_end(token))
        super().error(exc, msg, token)

    def _expression_end(self, token: Token) -> int:
        end = token.start_index
        for tok in self.tokenizer()(token.source):
            if tok.start_index > token.start_index:
                break
            if tok.kind == TOKEN_EXPRESSION:
                end = tok.start_index + len(tok.value)
        return end


class Output(LimitedStringIO):
    """Where a render writes: the template's own text through :meth:`literal`, and
    everything else (values, and whatever a tag prints) through ``write``.

    The default writes both as they are; a subclass can treat rendered values apart from
    the author's text (percent-encode them in a URL, say).
    """

    def __init__(self) -> None:
        super().__init__(limit=_OUTPUT_LIMIT)

    def literal(self, text: str) -> int:
        return self.write(text)


class _ContentNode(ContentNode):
    """Text written in the template: handed to ``literal`` when the output has one (a
    ``capture`` writes to a plain buffer, whose text is then a value like any other)."""

    __slots__ = ()

    def render_to_output(self, _: RenderContext, buffer: TextIO) -> int:
        literal = getattr(buffer, "literal", None)
        return literal(self.text) if literal is not None else buffer.write(self.text)


class _Literal(Literal):
    node_class = _ContentNode


def _bounded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so that it refuses huge ranges and huge results.

    The loop, output and namespace limits do not see inside one filter call, where a
    range literal or a chain of string filters can grow without bound, as in
    ``(1..1000000000) | join``.
    """

    @functools.wraps(func)  # keeps liquid's with_context/with_environment markers
    def bounded(value: object, *args: object, **kwargs: object) -> Any:
        for arg in (value, *args):
            if isinstance(arg, range) and len(arg) > _LOOP_LIMIT:
                raise FilterValueError(f"range longer than {_LOOP_LIMIT}", token=None)
        _spend(_FILTER + _size(value) + sum(map(_size, args)))
        result = func(value, *args, **kwargs)
        if isinstance(result, str) and len(result) > _OUTPUT_LIMIT:
            raise FilterValueError(f"result longer than {_OUTPUT_LIMIT}", token=None)
        _spend(_size(result))
        return result

    return bounded


def _pure_date(liquid_date: Callable[..., Any]) -> Callable[..., Any]:
    """Liquid's ``date`` filter without the wall clock or the machine's time zone."""

    @with_context
    def date(value: object, *args: object, context: RenderContext) -> Any:
        # 'now' would read the system clock; the engine runs on an injected clock, so it
        # is the scope's `now`. Epoch seconds would be read in the host's zone; use UTC.
        if isinstance(value, str) and value in ("now", "today"):
            value = context.resolve("now")
        elif (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.isdigit()
        ):
            value = datetime.fromtimestamp(int(value), UTC)
        return liquid_date(value, *args, environment=context.env)

    return date


_ENV = _Environment(autoescape=False)
_HTML_ENV = _Environment(autoescape=True)


class Template:
    """A compiled template. Make one with :func:`compile_template`."""

    __slots__ = ("_bound", "_escape", "_literal", "_parts", "paths", "source")

    def __init__(
        self,
        source: str,
        bound: BoundTemplate,
        paths: frozenset[tuple[str, ...]],
        *,
        escape: bool,
    ) -> None:
        self.source = source
        #: Global variable paths the template reads, each cut before its first index or
        #: computed segment: ``event.items[0].sku`` reads ``("event", "items")``.
        #: Loop variables and ``assign``/``capture`` locals are not global.
        self.paths = paths
        self._bound = bound
        self._escape = escape
        # Text without a tag or an output renders as itself: skip the render machinery.
        self._literal = source if "{{" not in source and "{%" not in source else None
        # Text with only plain outputs renders by lookups when the values are plain too.
        self._parts = _plain_parts(source) if self._literal is None else None

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    @property
    def escapes(self) -> bool:
        """Whether the values this template outputs are HTML-escaped."""
        return self._escape

    def render(self, scope: Mapping[str, Any], out: Output | None = None) -> str:
        """Render with ``scope``; never raises.

        Each top-level statement renders on its own: one that fails leaves no output and
        the rest still render. Once the output limit is reached, later statements fail
        too, so the result stops near the limit. With ``out``, the text goes through it
        (see :class:`Output`) and the result is what it holds.
        """
        if out is not None:
            return self._render(scope if isinstance(scope, Mapping) else {}, out)
        if self._literal is not None:
            return self._literal
        if not isinstance(scope, Mapping):  # bad input renders as if every key were missing
            scope = {}
        if self._parts is not None:
            text = _render_plain(self._parts, scope, self._escape)
            if text is not None:
                return text
        return self._render(scope, LimitedStringIO(limit=_OUTPUT_LIMIT))

    def _render(self, scope: Mapping[str, Any], out: LimitedStringIO) -> str:
        context = _Context(self._bound, globals=self._bound.make_globals(scope))
        work = _Work(_CHECK.get())
        token = _WORK.set(work)
        try:
            for node in self._bound.nodes:
                mark = out.tell()
                try:
                    node.render(context, out)
                except Exception:  # any data can fail, even an object whose str() raises
                    out.seek(mark)
                    out.truncate()
        finally:
            _WORK.reset(token)
        return out.getvalue()


# The plain fast path. Most subject lines and short texts are text with outputs such as
# ``{{ profile.firstName | default: 'there' }}``. Those render by dictionary lookups, with
# Liquid's meaning: a missing or nil value renders empty (or the default), and ``default``
# also replaces false and the empty string. A value that Liquid would render in a way of
# its own (a number that is not a whole one, a list, a date, a special property such as
# ``size``) makes the whole template take the full renderer, so the output is always
# the same as Liquid's.

_PLAIN_OUTPUT = re.compile(
    r"\{\{\s*([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*)\s*"
    r"(?:\|\s*default\s*:\s*(?:'([^'{}]*)'|\"([^\"{}]*)\")\s*)?\}\}"
)
_SPECIAL = frozenset({"size", "first", "last"})
_PLAIN_INT = 10**4000
_Part = str | tuple[tuple[str, ...], str | None]


def _plain_parts(source: str) -> tuple[_Part, ...] | None:
    """``source`` as text and plain outputs, or None if it has anything else."""
    if "{%" in source:
        return None
    parts: list[_Part] = []
    end = 0
    for match in _PLAIN_OUTPUT.finditer(source):
        parts.append(source[end : match.start()])
        default = match.group(2) if match.group(2) is not None else match.group(3)
        parts.append((tuple(match.group(1).split(".")), default))
        end = match.end()
    parts.append(source[end:])
    if any(isinstance(part, str) and ("{{" in part or "}}" in part) for part in parts):
        return None  # an output this path does not know: whitespace control, a filter, ...
    return tuple(part for part in parts if part != "")


def _render_plain(parts: tuple[_Part, ...], scope: Mapping[str, Any], escape: bool) -> str | None:
    """The text, or None when a value needs the full renderer."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        path, default = part
        value: Any = scope
        for key in path:
            if not isinstance(value, dict):
                return None
            if key not in value:
                if key in _SPECIAL:
                    return None
                value = None
                break
            value = value[key]
        if value is None or (default is not None and (value is False or value == "")):
            out.append(default or "")  # Liquid does not escape a literal
            continue
        if type(value) is str:
            text = value
        elif type(value) is int and -_PLAIN_INT < value < _PLAIN_INT:
            text = str(value)
        else:  # str() of a number of over 4,300 digits raises: Liquid's statement fails
            return None
        out.append(str(markupsafe.escape(text)) if escape else text)
    text = "".join(out)
    return text if len(text.encode()) <= _OUTPUT_LIMIT else None


def compile_template(source: str, *, escape: bool = False) -> Template:
    """Parse and check ``source``.

    ``escape=True`` HTML-escapes the output of variables (not the template's own text nor
    string literals), for a template that makes HTML; the ``safe`` filter then marks a
    value as trusted HTML. The default is off: a subject or an SMS is not HTML.
    """
    try:
        bound = (_HTML_ENV if escape else _ENV).from_string(source)
    except LiquidError as err:
        index = err.token.start_index if err.token is not None else 0
        message = _message(err)
        if index < 0:  # the template ended inside a block that was never closed
            message = message.replace("end of expression", "end of template")
        raise _error_at(source, index, message) from err
    analysis = bound.analyze(include_partials=False)
    for name, spans in analysis.filters.items():
        if name not in _ENV.filters:
            raise _error_at(source, spans[0].index, f"unknown filter '{name}'")
    for name in _LOADING_TAGS:
        if name in analysis.tags:
            message = f"the '{name}' tag is not supported: templates cannot load templates"
            raise _error_at(source, analysis.tags[name][0].index, message)
    paths = frozenset(
        _static_prefix(var.segments) for found in analysis.globals.values() for var in found
    )
    return Template(source, bound, paths, escape=escape)


def _message(err: LiquidError) -> str:
    message = str(err.message)
    if err.__cause__ is not None:  # liquid wraps unexpected parser failures
        message = f"{message}: {err.__cause__}"
    return message


def _error_at(source: str, index: int, message: str) -> TemplateError:
    # A negative index means the end of the template, such as a block never closed.
    index = len(source) if index < 0 else min(index, len(source))
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    return TemplateError(message, line, column)


def _static_prefix(segments: list[Any]) -> tuple[str, ...]:
    prefix: list[str] = []
    for segment in segments:
        if not isinstance(segment, str):
            break
        prefix.append(segment)
    return tuple(prefix)

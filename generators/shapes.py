"""Services of one shape share their generated text: generate once, substitute the names.

Most services of a monorepo differ, as far as their OpenSLO documents, SLO rules and technology alerts
are concerned, only in names: same tier, SLI defaults, objectives, technologies and selector labels.
Building and rendering those documents is most of a build's CPU time, so an artifact kind is generated
once per shape, for a stand-in service whose name, team, spec path, dependency names and selector values
are placeholders, and each further service of that shape gets the stand-in's bytes with its own text put
back. The result is byte-identical to generating the service directly, by construction:

* The stand-in carries only the fields the kind declares it reads; every other field is :data:`UNUSED`,
  which raises when touched (attribute, iteration, truth, comparison, formatting). A generator that starts
  reading an undeclared field makes the kind fall back to direct generation, and tests/test_shapes.py
  fails until the field is declared.
* Placeholders all begin with :data:`PREFIX`; a spec whose own text holds it is generated directly, so
  the substitution back meets only text the stand-in put there. A template in which a placeholder was
  changed (lowercased or cleaned into another name) is not used: its shape is generated directly.
* Real text must be inert: printable ASCII without quotes or backslashes, which neither YAML quoting
  nor PromQL string literals change, and only equality matchers (a regex value is checked by the PromQL
  parser). A kind may veto a stand-in whose output could depend on the real text in other ways
  (``check``: the technology alerts refuse rules whose own matchers meet a selector's label).
* YAML picks each scalar's style from its text (a service called ``true`` or ``123`` is quoted where it
  stands alone, a placeholder is not). Every distinct string of the stand-in's documents that holds a
  placeholder is checked, for each service, to be written the same way once the real text is in it;
  if one is not, that service is generated directly. Most strings need only their new length checked:
  :func:`render.substitution_keeps_style` proves, per string, that inert real text cannot change its style.
* A shape is templated when it is seen the second time, so services of one-off shapes cost nothing
  extra, and at most :data:`MAX_SHAPES` templates per kind are kept per process. A kind with its own
  renderer (JSON: no style checks, so a template costs one generation) is templated when first seen.
* Within :func:`preparing`, shapes are only counted and templated, no file is made: a first build's
  parent does it while the Rego engines judge the specs, so the workers doit forks inherit the templates
  instead of each making them all again (docs/benchmarks.md).
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Any, Callable, Iterable, NamedTuple

from generators import render
from generators.model import Service, Technology

PREFIX = "NTHLAYERSTANDIN"
NAME = PREFIX + "SERVICE"
TEAM = PREFIX + "TEAM"
SOURCE = PREFIX + "SOURCE"
MAX_SHAPES = 256  # templates kept per kind (a few tens of kB each)
MAX_SEEN = 100_000  # shapes remembered as seen once (by hash)

Documents = Callable[[Service], "dict[str, tuple[Any, bool]]"]
# Renders documents as files (``render.render_files``' signature): a kind that writes JSON passes its own.
Renderer = Callable[[Any, str, str], "dict[str, bytes]"]


class _NotInShape(Exception):
    """The generator read a field its kind does not declare."""


class _Unused:
    """A field the artifact kind does not read. Touching it in any way raises :class:`_NotInShape`."""

    __slots__ = ()

    def _touched(self, *args: Any, **kwargs: Any) -> Any:
        raise _NotInShape

    __getattr__ = __iter__ = __len__ = __bool__ = __str__ = __format__ = _touched
    __getitem__ = __contains__ = __eq__ = __ne__ = __lt__ = __gt__ = __add__ = __radd__ = _touched
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "UNUSED"


UNUSED: Any = _Unused()
_FIELDS = tuple(field.name for field in dataclasses.fields(Service))
_FREE_TEXT = frozenset({"runbook_url", "description"})  # may mention the service or team by name
_SUBSTITUTED = _FREE_TEXT | {"name", "team", "source", "labels", "sli", "technologies"}  # stand-in values differ


class _Template:
    __slots__ = ("key", "files", "_all", "_settled", "_led", "_unled", "_settled_bound")

    def __init__(self, files: dict[str, bytes], checks: list[_Check], placeholders: tuple[str, ...]) -> None:
        self.key: tuple[Any, ...] = ()  # the full shape key (shapes are remembered by a hash of it)
        # Each file as a %-format of its placeholders (by index) when it holds any, so that substituting
        # is one pass in C (``data % values``) instead of one bytes.replace per placeholder: a tenth of a
        # build's CPU went to those passes over the largest files. Placeholders never overlap (all begin
        # with PREFIX, none is the start of another) and real text never holds PREFIX, so one pass is
        # the same as replacing them one after another.
        self.files = []
        for path, data in files.items():
            held = tuple(index for index, placeholder in enumerate(placeholders) if placeholder.encode() in data)
            if held:
                data = data.replace(b"%", b"%%")
                for index in held:
                    data = data.replace(placeholders[index].encode(), b"%%(%d)s" % index)
            self.files.append((path, data, held))
        # With inert real text, most checks pass on their new length alone (see _same_style), and whole
        # groups of them pass at once when their longest text, each placeholder replaced by the longest
        # real text, stays within render.MAX_SCALAR: the settled checks, and the checks led by each
        # placeholder once its real text's first character passes render.unresolved_start. A kind's
        # template holds tens of such strings: checked one by one, they were a sixth of its time.
        self._all = checks
        self._settled = [check for check in checks if check.settled]
        self._settled_bound = _bound(self._settled)
        self._unled = [check for check in checks if not check.settled and check.lead < 0]
        led: dict[int, list[_Check]] = {}
        for check in checks:
            if not check.settled and check.lead >= 0:
                led.setdefault(check.lead, []).append(check)
        self._led = [(lead, _bound(group), group) for lead, group in sorted(led.items())]

    def keeps_style(self, subs: tuple[tuple[str, str], ...], inert: bool, longest: int) -> bool:
        """Whether every placeholder-bearing string is written in the stand-in's style with one service's
        real text (``subs``: placeholder, real text; ``inert`` and ``longest``: see _Shape) in it."""
        if not inert:
            return _same_style(self._all, subs, False)
        pending = list(self._unled)
        if not _within(self._settled_bound, longest):
            pending += self._settled
        for lead, bound, group in self._led:
            if not (render.unresolved_start(subs[lead][1][0]) and _within(bound, longest)):
                pending += group
        return _same_style(pending, subs, True)


def _bound(checks: list[_Check]) -> tuple[int, int]:
    """The longest text of ``checks`` and the most placeholders one of them holds."""
    return (max((len(check.text) for check in checks), default=0),
            max((sum(count for _, count, _ in check.needs) for check in checks), default=0))


def _within(bound: tuple[int, int], longest: int) -> bool:
    """Whether every string of a group stays within render.MAX_SCALAR once each placeholder is replaced by
    text of at most ``longest`` characters."""
    return bound[0] + bound[1] * longest <= render.MAX_SCALAR


class _Check(NamedTuple):
    """A placeholder-bearing string of a template, whose style the real text must keep."""

    text: str
    needs: tuple[tuple[int, int, int], ...]  # (placeholder index, occurrences, placeholder length)
    key: bool  # a mapping key
    style: str  # render.scalar_style(text, key)
    settled: bool  # render.substitution_keeps_style: inert real text of bounded length keeps the style
    lead: int  # the placeholder the string starts with, when settled given its real text's first character; else -1


_NEW, _UNUSABLE = object(), object()
_PREPARING: list[bool] = []  # non-empty inside preparing()
_seen: dict[Any, Any] = {}  # shape key hash → its _Template, None (seen once) or _UNUSABLE
_templates: dict[str, int] = {}
stats = {"direct": 0, "templated": 0, "not_in_shape": 0}


class _Parts:
    """What the stand-ins of one service are made of, computed once for all its artifact kinds: each
    field's stand-in value and the repr that keys the shape, which fields' real text holds the prefix,
    and the (placeholder, real text) pairs."""

    __slots__ = ("service", "values", "reprs", "prefixed", "base", "every", "neutral_base", "neutral_every",
                 "facts_base", "facts_every")
    reprs: dict[str, str]
    prefixed: dict[str, bool]

    def __init__(self, service: Service) -> None:
        name, team = service.name, service.team
        pairs = sorted(((name, NAME), (team, TEAM)), key=lambda pair: -len(pair[0]))  # longest first

        def sub(text: str) -> str:
            for real, placeholder in pairs:
                text = text.replace(real, placeholder)
            return text

        self.service = service
        self.base = ((NAME, name), (TEAM, team), (SOURCE, service.source))
        every = list(self.base)
        values: dict[str, Any] = {"name": NAME, "team": TEAM, "source": SOURCE}
        for field in _FIELDS:
            if field in values:
                continue
            value = getattr(service, field)
            if field in _FREE_TEXT and value:
                value = sub(value)
            elif field == "labels":
                value = tuple((label, sub(text)) for label, text in value)
            elif field == "sli":  # the default selector is {job: <service name>}
                value = dataclasses.replace(value, selector=tuple((label, op, sub(text)) for label, op, text
                                                                  in value.selector))
            elif field == "technologies":
                value = _standin_technologies(value, sub, every)  # None: not templatable
            values[field] = value
        self.values = values
        self.every = tuple(every)
        self.reprs = {}  # filled as kinds ask (each reads a few fields)
        self.prefixed = {}  # likewise
        self.neutral_base = all(_neutral(real) for _, real in self.base)
        self.neutral_every = self.neutral_base and all(_neutral(real) for _, real in self.every[3:])
        # Whether all real text of ``base`` (``every``) is inert, and its longest length (see _Shape).
        self.facts_base = _facts(self.base)
        self.facts_every = _facts(self.every)

    def key(self, field: str) -> str:
        """The field's part of the shape key: repr, not the value: Decimal("500") == Decimal("500.0") and
        1 == 1.0, but they may print differently."""
        text = self.reprs.get(field)
        if text is None:
            text = self.reprs[field] = repr(self.values[field])
        return text

    def holds_prefix(self, field: str) -> bool:
        """Whether the service's own value of the field holds placeholder text. A field the stand-in keeps
        as it is has the repr its key part has."""
        found = self.prefixed.get(field)
        if found is None:
            own = self.key(field) if field not in _SUBSTITUTED else repr(getattr(self.service, field))
            found = self.prefixed[field] = PREFIX in own
        return found


def _facts(subs: tuple[tuple[str, str], ...]) -> tuple[bool, int]:
    return all(render.INERT.match(real) for _, real in subs), max(len(real) for _, real in subs)


_parts: list[_Parts] = []  # the last service's (its kinds are generated one after another)
_READS: dict[frozenset[str], tuple[tuple[str, ...], tuple[str, ...], bool]] = {}  # per kind: see _fields


def _fields(reads: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """For a kind's ``reads``: the fields of its shape key in order, those whose real text must not hold the
    prefix, and whether it reads the technologies. Worked out once per kind."""
    found = _READS.get(reads)
    if found is None:
        found = _READS[reads] = (
            tuple(field for field in _FIELDS if field in reads and field not in ("name", "team", "source")),
            tuple(field for field in _FIELDS if field in reads and field != "tier"),
            "technologies" in reads)
    return found


class _Shape(NamedTuple):
    key: tuple[Any, ...]
    standin: Callable[[], Service]  # the stand-in service (needed only to make a template)
    subs: tuple[tuple[str, str], ...]  # (placeholder, real text) pairs to substitute back
    inert: bool  # all real text matches render.INERT
    longest: int  # the longest real text


def _standin(service: Service, reads: frozenset[str]) -> _Shape | None:
    """The shape of ``service`` for a kind reading ``reads``; None when the spec cannot be templated."""
    if _parts and _parts[0].service is service:
        parts = _parts[0]
    else:
        parts = _Parts(service)
        _parts[:] = [parts]
    key_fields, checked, with_technologies = _fields(reads)
    if with_technologies and parts.values["technologies"] is None:
        return None
    if not (parts.neutral_every if with_technologies else parts.neutral_base):
        return None
    if any(parts.holds_prefix(field) for field in checked):
        return None

    def standin() -> Service:
        return dataclasses.replace(service, **{field: parts.values[field] if field in reads else UNUSED
                                               for field in _FIELDS})

    subs, (inert, longest) = (parts.every, parts.facts_every) if with_technologies else (parts.base, parts.facts_base)
    return _Shape(tuple(parts.key(field) for field in key_fields), standin, subs, inert, longest)


def _standin_technologies(technologies: tuple[Technology, ...], sub: Callable[[str], str],
                          subs: list[tuple[str, str]]) -> tuple[Technology, ...] | None:
    """Each dependency's name and selector values become placeholders (their labels and operators stay in
    the shape). Only equality matchers: a regex value is checked by the PromQL parser, so its text is
    not inert."""
    result = []
    for index, tech in enumerate(technologies):
        dependency = f"{PREFIX}DEP{index}X"
        subs.append((dependency, tech.name))
        selector = []
        for position, (label, op, text) in enumerate(tech.selector):
            if op not in ("=", "!=") or not text:
                return None
            placeholder = f"{PREFIX}VAL{index}X{position}X"
            subs.append((placeholder, text))
            selector.append((label, op, placeholder))
        runbook = sub(tech.runbook_url) if tech.runbook_url else tech.runbook_url
        result.append(Technology(tech.type, dependency, tuple(selector), runbook))
    return tuple(result)


def _neutral(text: str) -> bool:
    """Text whose quoting neither YAML (single quotes) nor PromQL (double quotes, backslash) changes."""
    return text.isascii() and text.isprintable() and not any(c in text for c in "'\"\\")


def _collect(node: Any, found: dict[tuple[str, bool], None]) -> None:
    if type(node) is dict:
        for key, value in node.items():
            if type(key) is str and PREFIX in key:
                found[(key, True)] = None
            _collect(value, found)
    elif type(node) is list:
        for item in node:
            _collect(item, found)
    elif type(node) is str and PREFIX in node:
        found[(node, False)] = None


def _transformed(rendered: dict[str, bytes]) -> bool:
    """Whether a generator changed a placeholder (lowercased it, cleaned it into a name, hashed it with
    it): the template then holds text that no substitution turns into the real service's."""
    prefix, lowered = PREFIX.encode(), PREFIX.lower().encode()
    return any(data.lower().count(lowered) != data.count(prefix) for data in rendered.values())


def _template(documents: Documents, standin: Service, placeholders: tuple[str, ...],
              renderer: Renderer | None = None) -> _Template | None:
    files = documents(standin)
    if renderer is not None:
        # JSON writes every string the same way, whatever inert text it holds: no style to check.
        rendered = renderer(files, SOURCE, ".")
        return None if _transformed(rendered) else _Template(rendered, [], placeholders)
    rendered = render.render_files_direct(files, SOURCE, ".")
    if rendered is None or _transformed(rendered):  # None: PyYAML would write a document, its choices unchecked
        return None
    found: dict[tuple[str, bool], None] = {}
    for docs, multi in files.values():
        for doc in docs if multi else [docs]:
            _collect(doc, found)
    checks = []
    for text, is_key in found:
        style = render.scalar_style(text, is_key)
        if style is None:
            return None
        held = [index for index, placeholder in enumerate(placeholders) if placeholder in text]
        words = tuple(placeholders[index] for index in held)
        settled = render.substitution_keeps_style(text, is_key, words)
        lead = -1
        if not settled and render.substitution_keeps_style(text, is_key, words, lead_unresolved=True):
            lead = next(index for index in held if text.startswith(placeholders[index]))
        needs = tuple((index, text.count(placeholders[index]), len(placeholders[index])) for index in held)
        checks.append(_Check(text, needs, is_key, style, settled, lead))
    return _Template(rendered, checks, placeholders)


def _same_style(checks: Iterable[_Check], subs: tuple[tuple[str, str], ...], inert: bool) -> bool:
    """Whether every checked string is written in the stand-in's style once the real text is in it.
    Given that, substituting in the rendered bytes equals rendering the real strings: the real text
    holds no quote, backslash or line break, so quoting and line splitting commute with substitution.
    (Services of one shape have the same placeholders in the same order, so each check knows which
    of them its string holds.) With ``inert`` real text (render.INERT), a settled string only needs
    its new length checked."""
    for check in checks:
        if inert and (check.settled or (check.lead >= 0 and render.unresolved_start(subs[check.lead][1][0]))):
            length = len(check.text)
            for index, count, width in check.needs:
                length += count * (len(subs[index][1]) - width)
            if length <= render.MAX_SCALAR:
                continue
        real = check.text
        for index, _count, _width in check.needs:
            placeholder, value = subs[index]
            real = real.replace(placeholder, value)
        if render.scalar_style(real, check.key) != check.style:
            return False
    return True


def shaped_files(kind: str, documents: Documents, reads: frozenset[str], service: Service, out_dir: str,
                 context: tuple[Any, ...] = (), check: Callable[[Service], None] | None = None,
                 renderer: Renderer | None = None) -> dict[str, bytes]:
    """``render_files(documents(service), service.source, out_dir)``, from the shape's template when
    another service of the same shape was seen before in this process. ``kind`` and ``context`` name the
    generator and whatever else its output depends on (the catalog files of the technology alerts);
    ``check`` raises for a stand-in whose output could depend on the real text in other ways.
    ``renderer`` replaces render_files for a kind that writes JSON (the Grafana dashboards)."""
    shape = _standin(service, reads)
    if shape is not None:
        key = (kind, context, *shape.key)
        # A hash keeps a repository of one-off shapes cheap to remember; a template also holds its full
        # key, compared before use, so two shapes sharing a hash would only cost a direct generation.
        try:
            digest: Any = hash(key)
        except TypeError:  # a context that cannot be hashed: its text
            digest = repr(key)
        template = _seen.get(digest, _NEW)
        if template is _NEW and renderer is not None:
            template = None  # a JSON kind's template costs what one direct generation costs: make it at once
        if template is _NEW:
            if len(_seen) < MAX_SEEN:
                _seen[digest] = None
        elif template is None and _templates.get(kind, 0) < MAX_SHAPES:
            _templates[kind] = _templates.get(kind, 0) + 1
            try:
                standin = shape.standin()
                if check is not None:
                    check(standin)
                template = _template(documents, standin, tuple(placeholder for placeholder, _ in shape.subs),
                                     renderer)
            except _NotInShape:
                stats["not_in_shape"] += 1
                template = None
            except Exception:  # whatever the stand-in trips on, the service itself is generated directly
                template = None
            if template is not None:
                template.key = key
            _seen[digest] = template or _UNUSABLE
        if _PREPARING:
            return {}
        subs = shape.subs
        if isinstance(template, _Template) and template.key == key:
            if template.keeps_style(subs, shape.inert, shape.longest):
                stats["templated"] += 1
                values = {b"%d" % index: real.encode("utf-8") for index, (_, real) in enumerate(subs)}
                return {out_dir + path[1:]: data % values if held else data for path, data, held in template.files}
    if _PREPARING:
        return {}
    stats["direct"] += 1
    return (renderer or render.render_files)(documents(service), service.source, out_dir)


def templates_made() -> int:
    """How many templates this process has made (or tried to), all kinds."""
    return sum(_templates.values())


@contextmanager
def preparing() -> Any:
    """Within it, :func:`shaped_files` makes no file (it returns ``{}``): it only counts the service's shape
    as seen and makes the shape's template when due, as a build of the service would."""
    _PREPARING.append(True)
    try:
        yield
    finally:
        _PREPARING.pop()


__all__ = ["shaped_files", "preparing", "templates_made", "UNUSED", "NAME", "TEAM", "SOURCE", "MAX_SHAPES", "stats"]

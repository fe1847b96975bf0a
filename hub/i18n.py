"""Translations: one gettext catalog per locale, read at start-up, and the locale fallback chain.

Layout, inside the templates directory (the catalogs travel with the templates they translate)::

    locales/messages.pot   every translatable string of templates/, extracted (never edited)
    locales/<lang>.po      one catalog per language: messages, replies, tracking page, console

Templates are written in English; English is the source language and needs no catalog. Each
``.po`` is parsed with Babel and compiled in memory when the templates are loaded, so no ``.mo``
file is committed and there is no build step. Fuzzy and empty entries are left out of the
compiled catalog: such a string is shown in English until it is translated.

``Catalogs(templates_dir).translations(locale)`` gives the catalog to use for a locale, following the chain of
``locale_chain`` (``de-AT`` -> ``de``; an unknown language -> the default). Adding a language
is adding ``locales/<lang>.po`` (``python -m hub.i18n init <lang>`` starts one from the
template); ``python -m hub.i18n extract`` refreshes the template and every catalog after a
template changed. Errors: ``CatalogError`` (a catalog that cannot be read).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.support import NullTranslations, Translations
from jinja2 import nodes
from jinja2.nodes import EvalContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_eval_context
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

__all__ = [
    "SOURCE_LOCALE",
    "CatalogError",
    "Catalogs",
    "extract",
    "locale_chain",
    "page_strings",
    "reason_texts",
    "reply_words",
]

SOURCE_LOCALE = "en"  # the language the templates are written in
CATALOG_DIR = "locales"
TEMPLATE_FILE = "messages.pot"
PROJECT = "Parcelhub"
# The template environment's whitespace options: extraction must see the same message text the
# renderer looks up, so both use these.
JINJA_OPTIONS: dict[str, Any] = {"trim_blocks": True, "lstrip_blocks": True}
JINJA_EXTENSIONS = ("jinja2.ext.i18n",)
# Where the tracking page's strings are listed (see ``page_strings``).
PAGE_STRINGS = "_track/strings.j2"
# Where the words of SMS replies are listed (see ``reply_words``), and their contexts' prefix.
REPLY_WORDS = "_reply_words.txt.j2"
REPLY_CONTEXT = "reply words: "
# Where the wording of each reason code is listed (see ``reason_texts``).
REASONS = "_reasons.j2"
# Written into every catalog header in place of the time of extraction, which would make each
# run rewrite every file.
FIXED_DATE = datetime(2024, 1, 1, tzinfo=UTC)


class CatalogError(Exception):
    """A catalog that cannot be read or compiled."""


def locale_chain(locale: str | None, default: str = SOURCE_LOCALE) -> list[str]:
    """``de-AT`` -> ``["de-AT", "de", "en"]``; accepts ``de_AT`` too."""
    chain: list[str] = []
    if locale:
        parts = locale.replace("_", "-").split("-")
        lang = parts[0].lower()
        if len(parts) > 1 and parts[1]:
            chain.append(f"{lang}-{parts[1].upper()}")
        chain.append(lang)
    for item in (default, default.split("-")[0]):
        if item not in chain:
            chain.append(item)
    return chain


def _compile(path: Path) -> Translations:
    """Parse a ``.po`` and compile it in memory (fuzzy entries left out)."""
    try:
        with path.open("rb") as f:
            catalog = read_po(f, locale=path.stem.replace("-", "_"), domain="messages")
    except (OSError, ValueError) as e:
        raise CatalogError(f"{path}: {e}") from e
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    compiled = Translations(fp=buffer)
    compiled.salt = hashlib.sha256(buffer.getvalue()).hexdigest()[:16]  # type: ignore[attr-defined]
    return compiled


class Catalogs:
    """Every catalog of a templates directory. The catalogs are compiled once per process (and
    again when a file changes): every Renderer, API and worker of a process shares them."""

    def __init__(self, templates_dir: str | Path, default_locale: str = SOURCE_LOCALE) -> None:
        self.directory = Path(templates_dir) / CATALOG_DIR
        self.default_locale = default_locale
        self._translations = _compiled(self.directory.resolve(), _stamp(self.directory))

    @property
    def locales(self) -> list[str]:
        """The locales with a catalog, and the source locale."""
        return sorted(self._translations)

    def resolve(self, locale: str | None) -> str:
        """The first locale of the chain that has a catalog (else the source locale)."""
        for candidate in locale_chain(locale, self.default_locale):
            if candidate in self._translations:
                return candidate
        return SOURCE_LOCALE

    def translations(self, locale: str | None) -> NullTranslations:
        return self._translations[self.resolve(locale)]


def _stamp(*paths: Path) -> tuple[tuple[str, int, int], ...]:
    """What identifies a version of these files (or of the ``.po`` files of these directories):
    a cache keyed by it reloads an edited catalog or template."""
    files = [f for p in paths for f in (sorted(p.glob("*.po")) if p.is_dir() else [p])]
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists())


@functools.lru_cache(maxsize=32)
def _compiled(directory: Path, stamp: tuple[tuple[str, int, int], ...]) -> dict[str, NullTranslations]:
    """The catalogs of one directory, compiled (``stamp``: which version of them)."""
    compiled: dict[str, NullTranslations] = {SOURCE_LOCALE: NullTranslations()}
    if directory.is_dir():
        for path in sorted(directory.glob("*.po")):
            compiled[_tag(path.stem)] = _compile(path)
    return compiled


def _tag(stem: str) -> str:
    """``de_AT`` (gettext's spelling, also accepted as a file name) -> ``de-AT``."""
    parts = stem.replace("_", "-").split("-")
    return "-".join([parts[0].lower(), *(p.upper() for p in parts[1:])])


def environment(
    loader: jinja2.BaseLoader, translations: NullTranslations, *, autoescape: Any = False, **options: Any
) -> ImmutableSandboxedEnvironment:
    """A sandboxed environment whose ``_``, ``gettext``, ``pgettext``, ``ngettext`` and
    ``npgettext`` speak one language.

    One environment per locale keeps translation out of the render call: nothing is installed
    or swapped while a template renders, so concurrent renders in different languages are safe.
    Strings with a fixed text are translated when a template is compiled (``Translated``).
    """
    env = Translated(
        translations,
        loader=loader,
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        extensions=list(JINJA_EXTENSIONS),
        **JINJA_OPTIONS,
        **options,
    )
    env.newstyle_gettext = True  # type: ignore[attr-defined]  # read by the i18n extension's {% trans %}
    env.globals.update(_gettext_callables(translations))
    return env


class Translated(ImmutableSandboxedEnvironment):
    """An environment of one language that translates, when it compiles a template, every
    ``_``/``gettext``/``pgettext`` call (and ``{% trans %}`` block) whose text is fixed: the call
    becomes the translated text, %-formatted with its variables as Jinja's newstyle gettext
    does (Markup under autoescape, so the variables are escaped and the text is not). A message
    makes a few dozen such calls; each was a sandboxed call into the catalog at every render.
    Calls with a count (``ngettext``) stay calls. ``salt`` names the catalog the compiled
    templates depend on (a template compiled for one language is never loaded by another).
    """

    def __init__(self, translations: NullTranslations, **options: Any) -> None:
        super().__init__(**options)
        self.translations = translations
        # Set on each compiled catalog (``_compile``); the source language has none.
        self.salt: str = getattr(translations, "salt", SOURCE_LOCALE)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        result = _FixedTexts(self.translations).visit(tree)
        assert isinstance(result, nodes.Template)
        return result


class _FixedTexts(NodeTransformer):
    def __init__(self, translations: NullTranslations) -> None:
        self.translations = translations

    def visit_Call(self, node: nodes.Call) -> nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, nodes.Call)
        node = visited
        callee = node.node
        if not isinstance(callee, nodes.Name) or node.dyn_args is not None or node.dyn_kwargs is not None:
            return node
        texts = [arg.value for arg in node.args if isinstance(arg, nodes.Const) and isinstance(arg.value, str)]
        if len(texts) != len(node.args):
            return node
        variables = {kw.key: kw.value for kw in node.kwargs}
        if callee.name in ("_", "gettext") and len(texts) == 1:
            translated = str(self.translations.gettext(texts[0]))
        elif callee.name == "pgettext" and len(texts) == 2:
            translated = str(self.translations.pgettext(texts[0], texts[1]))
            variables.setdefault("context", nodes.Const(texts[0]))
        else:
            return node
        text = nodes.MarkSafeIfAutoescape(nodes.Const(translated), lineno=node.lineno)
        pairs = [nodes.Pair(nodes.Const(key), value, lineno=node.lineno) for key, value in variables.items()]
        return nodes.Mod(text, nodes.Dict(pairs, lineno=node.lineno), lineno=node.lineno)


def _gettext_callables(translations: NullTranslations) -> dict[str, Any]:
    """``_``, ``gettext``, ``ngettext``, ``pgettext`` and ``npgettext`` with the semantics of
    Jinja's newstyle gettext (variables as keywords, the result always %-formatted, Markup under
    autoescape, ``num`` and ``context`` available to the string), calling the catalog directly.

    Jinja's own wrappers reach the catalog through two more sandboxed calls each (an alias to
    ``gettext``, then ``context.call`` of the catalog's method); with a few dozen strings per
    message that doubled the cost of rendering one.
    """

    def done(eval_ctx: EvalContext, text: str, variables: dict[str, Any]) -> str:
        return (Markup(text) if eval_ctx.autoescape else text) % variables

    @pass_eval_context
    def gettext(eval_ctx: EvalContext, string: str, /, **variables: Any) -> str:
        return done(eval_ctx, translations.gettext(string), variables)

    @pass_eval_context
    def ngettext(eval_ctx: EvalContext, singular: str, plural: str, num: int, /, **variables: Any) -> str:
        variables.setdefault("num", num)
        return done(eval_ctx, translations.ngettext(singular, plural, num), variables)

    @pass_eval_context
    def pgettext(eval_ctx: EvalContext, context: str, string: str, /, **variables: Any) -> str:
        variables.setdefault("context", context)
        return done(eval_ctx, str(translations.pgettext(context, string)), variables)

    @pass_eval_context
    def npgettext(
        eval_ctx: EvalContext, context: str, singular: str, plural: str, num: int, /, **variables: Any
    ) -> str:
        variables.setdefault("context", context)
        variables.setdefault("num", num)
        return done(eval_ctx, str(translations.npgettext(context, singular, plural, num)), variables)

    return {"_": gettext, "gettext": gettext, "ngettext": ngettext, "pgettext": pgettext, "npgettext": npgettext}


def page_strings(templates_dir: str | Path) -> dict[str, dict[str, Any]]:
    """See ``_page_strings``; read once per version of the catalogs and of the list (shared:
    do not change the result)."""
    directory = Path(templates_dir).resolve()
    return _page_strings(directory, _stamp(directory / CATALOG_DIR, directory / PAGE_STRINGS))


@functools.lru_cache(maxsize=16)
def _page_strings(templates_dir: Path, stamp: tuple[tuple[str, int, int], ...]) -> dict[str, dict[str, Any]]:
    """The tracking page's strings per language: ``{lang: {key: text, "milestones": {...}}}``.

    The keys and English texts are listed in ``_track/strings.j2``; every language with a
    catalog gets them translated (an untranslated string stays English).
    """
    result: dict[str, dict[str, Any]] = {}
    for lang, module in _translated_modules(templates_dir, PAGE_STRINGS).items():
        strings: dict[str, Any] = dict(getattr(module, "strings"))  # noqa: B009 (set by the template)
        strings["milestones"] = dict(getattr(module, "milestones"))  # noqa: B009
        result[lang] = strings
    return result


def reason_texts(templates_dir: str | Path) -> dict[str, dict[str, str]]:
    """What each reason code says, per language: ``{lang: {code: text}}`` from ``_reasons.j2``;
    read once per version of the catalogs and of the list (shared: do not change the result)."""
    directory = Path(templates_dir).resolve()
    return _reason_texts(directory, _stamp(directory / CATALOG_DIR, directory / REASONS))


@functools.lru_cache(maxsize=16)
def _reason_texts(templates_dir: Path, stamp: tuple[tuple[str, int, int], ...]) -> dict[str, dict[str, str]]:
    modules = _translated_modules(templates_dir, REASONS)
    return {lang: {code: str(text) for code, text in module.reasons.items()} for lang, module in modules.items()}


def _translated_modules(templates_dir: Path, name: str) -> dict[str, Any]:
    """Each language's module of the template ``name``: its top-level ``set`` values, translated
    by that language's catalog (English: as written)."""
    catalogs = Catalogs(templates_dir)
    loader = jinja2.FileSystemLoader(str(templates_dir))
    return {
        lang: environment(loader, catalogs.translations(lang)).get_template(name).make_module()
        for lang in catalogs.locales
    }


def reply_words(templates_dir: str | Path) -> dict[str, list[str]]:
    """See ``_reply_words``; read once per version of the catalogs and of the list (shared: do
    not change the result)."""
    directory = Path(templates_dir).resolve()
    return _reply_words(directory, _stamp(directory / CATALOG_DIR, directory / REPLY_WORDS))


@functools.lru_cache(maxsize=16)
def _reply_words(templates_dir: Path, stamp: tuple[tuple[str, int, int], ...]) -> dict[str, list[str]]:
    """The words of SMS replies: ``{meaning: [words of every language]}``, e.g. ``{"leave at
    the door": ["DOOR", "TÜR", "TUER", "PUERTA", "PORTE"], ...}``.

    The meanings and English words are listed in ``_reply_words.txt.j2``; each catalog's
    translation of an entry is that language's words, separated by spaces. ``hub.replies``
    understands the words of every language at once.
    """
    directory = Path(templates_dir)
    catalogs = Catalogs(directory)
    source = (directory / REPLY_WORDS).read_text(encoding="utf-8")
    env = jinja2.Environment(extensions=list(JINJA_EXTENSIONS), **JINJA_OPTIONS)
    words: dict[str, list[str]] = {}
    found_messages = env.extract_translations(source)  # type: ignore[attr-defined]  # added by the i18n extension
    for _, function, message in found_messages:
        if function != "pgettext" or not isinstance(message, tuple) or len(message) != 2:
            continue
        context, english = message
        if not (isinstance(context, str) and isinstance(english, str)) or not context.startswith(REPLY_CONTEXT):
            continue
        found = words.setdefault(context.removeprefix(REPLY_CONTEXT), [])
        for lang in catalogs.locales:
            for word in str(catalogs.translations(lang).pgettext(context, english)).split():
                if word not in found:
                    found.append(word)
    return words


# -- extraction -------------------------------------------------------------------------------
def extracted(templates_dir: str | Path) -> Catalog:
    """Every translatable string of the templates (``*.j2`` anywhere below the directory)."""
    catalog = Catalog(project=PROJECT, fuzzy=False, charset="utf-8")
    options = {"extensions": ",".join(JINJA_EXTENSIONS), "newstyle_gettext": "true", "silent": "false"}
    options.update({k: str(v).lower() for k, v in JINJA_OPTIONS.items()})
    found = extract_from_dir(
        str(templates_dir),
        method_map=[("**.j2", "jinja2.ext:babel_extract")],
        options_map={"**.j2": options},
        comment_tags=("Translators:",),
        strip_comment_tags=True,
        # Babel skips directories starting with "_" by default; here they hold shared templates.
        directory_filter=lambda path: not Path(path).name.startswith("."),
    )
    for filename, lineno, message, comments, context in found:
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def _ids(catalog: Iterable[Any]) -> set[tuple[Any, str | None]]:
    return {(m.id, m.context) for m in catalog if m.id}


def template_path(templates_dir: str | Path) -> Path:
    return Path(templates_dir) / CATALOG_DIR / TEMPLATE_FILE


def extract(templates_dir: str | Path) -> list[Path]:
    """Rewrite ``messages.pot`` from the templates and merge it into every ``.po``.

    New strings arrive untranslated, changed ones fuzzy, and removed ones are dropped (gettext's
    msgmerge behaviour). Returns the files written.
    """
    pot = template_path(templates_dir)
    pot.parent.mkdir(parents=True, exist_ok=True)
    template = extracted(templates_dir)
    written = [pot]
    _write(pot, template)
    for po in sorted(pot.parent.glob("*.po")):
        with po.open("rb") as f:
            catalog = read_po(f, locale=po.stem.replace("-", "_"))
        catalog.update(template, no_fuzzy_matching=False)
        catalog.obsolete.clear()
        _write(po, catalog)
        written.append(po)
    return written


def init(templates_dir: str | Path, locale: str) -> Path:
    """Start ``locales/<locale>.po`` from the template (every string untranslated)."""
    pot = template_path(templates_dir)
    with pot.open("rb") as f:
        template = read_po(f)
    catalog = Catalog(locale=locale.replace("-", "_"), project=PROJECT, fuzzy=False, charset="utf-8")
    catalog.update(template)
    path = pot.parent / f"{locale}.po"
    _write(path, catalog)
    return path


def _write(path: Path, catalog: Catalog) -> None:
    # No line numbers and no dates: an unchanged template must give an unchanged file.
    catalog.creation_date = catalog.revision_date = FIXED_DATE
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, sort_output=True, include_lineno=False, omit_header=False)
    path.write_bytes(buffer.getvalue())


def stale(templates_dir: str | Path) -> set[tuple[Any, str | None]]:
    """Strings in which the templates and ``messages.pot`` differ (empty when up to date)."""
    with template_path(templates_dir).open("rb") as f:
        current = read_po(f)
    return _ids(extracted(templates_dir)) ^ _ids(current)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.i18n", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("extract", "check", "init"))
    parser.add_argument("locale", nargs="?", help="for init: the new language, e.g. it or pt-BR")
    parser.add_argument("--templates", default=str(Path(__file__).resolve().parent.parent / "templates"))
    args = parser.parse_args(argv)
    if args.command == "extract":
        for path in extract(args.templates):
            print(path)
        return 0
    if args.command == "init":
        if not args.locale:
            parser.error("init needs a locale")
        print(init(args.templates, args.locale))
        return 0
    differences = stale(args.templates)
    for message_id, context in sorted(differences, key=str):
        print(f"stale: {context or ''} {message_id!r}", file=sys.stderr)
    return 1 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main())

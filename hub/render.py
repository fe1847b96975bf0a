"""Template rendering: sandboxed Jinja2 environments, one per locale, translated by gettext.

Layout of ``templates/``::

    _layout.html.j2          shared HTML e-mail layout (autoescaped)
    <milestone>.txt.j2       blocks: sms, push_title, push_body, email_subject, email_text
    <milestone>.html.j2      the HTML e-mail body (extends _layout.html.j2, autoescaped)
    _replies.txt.j2          answers to customers' SMS, one block per answer
    locales/<lang>.po        the translations (see ``hub.i18n``)
    <lang>/<name>.j2         optional: a deployer's template for one language, used instead
    shops/<merchant_id>/<milestone>.txt.j2 (or .html.j2)
                             optional: a shop's own wording, ``{% extends "<milestone>.txt.j2" %}``
                             with only the blocks it changes; shops/<merchant_id>/<lang>/... for
                             one language (docs/templates.md)

Templates are written once, in English, with ``{% trans %}`` and ``_()``; each locale has an
environment of its own whose gettext functions speak that locale, so a render never swaps a
global translation. Plain-text templates are not autoescaped (an SMS must say "Tom's", not
"Tom&#39;s"); HTML templates are. Undefined variables are errors (``StrictUndefined``), so a
typo in a template fails loudly in tests instead of sending a message with a hole in it.

Errors: ``TemplateMissing`` (no template for the milestone), ``RenderError`` (the template
raised while rendering); both subclass ``RenderFailure``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .i18n import Catalogs, environment, locale_chain
from .merchants import Brand

log = logging.getLogger(__name__)

__all__ = [
    "PARTS",
    "RenderError",
    "RenderFailure",
    "Rendered",
    "Renderer",
    "TemplateMissing",
    "locale_chain",
    "page_environment",
]

TEXT_BLOCKS = ("sms", "push_title", "push_body", "email_subject", "email_text")
PARTS = (*TEXT_BLOCKS, "email_html")


class RenderFailure(Exception):
    """Base class for rendering failures."""


class TemplateMissing(RenderFailure):
    pass


class RenderError(RenderFailure):
    pass


@dataclass(frozen=True)
class Rendered:
    locale: str  # the locale whose templates were used
    sms: str
    push_title: str
    push_body: str
    email_subject: str
    email_text: str
    email_html: str
    brand: Brand | None = None  # the shop whose identity the message carries (hub.compose)


def _autoescape(name: str | None) -> bool:
    return bool(name and name.endswith(".html.j2"))


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates kept for the life of the process, shared by every Renderer: a worker
    (or a test) that builds a new Renderer does not compile the same templates again. Keyed by
    jinja2 on the template's name and source, so an edited template is compiled afresh, and on
    the language's catalog: a template is compiled with its fixed texts translated
    (``hub.i18n.Translated``), so each language (and each version of its catalog) has its own."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def get_bucket(
        self, environment: jinja2.Environment, name: str, filename: str | None, source: str
    ) -> jinja2.bccache.Bucket:
        salt = getattr(environment, "salt", "")
        key = f"{self.get_cache_key(name, filename)}:{salt}"
        bucket = jinja2.bccache.Bucket(environment, key, self.get_source_checksum(source))
        self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


COMPILED = _CompiledTemplates()


class Renderer:
    """Renders a milestone's message variants for a locale. One instance per process."""

    def __init__(self, directory: str | Path, default_locale: str = "en") -> None:
        self.directory = Path(directory)
        self.default_locale = default_locale
        self.catalogs = Catalogs(self.directory, default_locale)
        self.locales = self.catalogs.locales
        self._envs: dict[str, ImmutableSandboxedEnvironment] = {}
        # Shops with templates of their own (directories under shops/), found once; and per
        # (locale, shop, template) the name to load, so a message looks at the disk once at most.
        shops = self.directory / "shops"
        self.shops = frozenset(p.name for p in shops.iterdir() if p.is_dir()) if shops.is_dir() else frozenset()
        self._shop_names: dict[tuple[str, str, str], str] = {}

    def env(self, locale: str) -> ImmutableSandboxedEnvironment:
        """The environment of a resolved locale: its own templates first, then the shared ones."""
        env = self._envs.get(locale)
        if env is None:
            # A deployer's <lang>/ directory first, so one message can be overridden in one language.
            loader = jinja2.FileSystemLoader([str(self.directory / locale), str(self.directory)])
            env = environment(
                loader,
                self.catalogs.translations(locale),
                autoescape=_autoescape,
                keep_trailing_newline=False,
                auto_reload=False,
                bytecode_cache=COMPILED,
            )
            self._envs[locale] = env
        return env

    def resolve_locale(self, locale: str | None) -> str:
        """The first locale of the chain that has a catalog (falls back to the default)."""
        return self.catalogs.resolve(locale)

    def precompile(self) -> int:
        """Compile every template for every language now (a worker does this when it starts), so
        the first messages of each language do not pay for it; returns how many were compiled.
        Compiled templates are shared by every Renderer of the process (``COMPILED``)."""
        names = sorted(p.name for p in self.directory.glob("*.j2"))
        count = 0
        for locale in self.locales:
            overrides = sorted(p.name for p in (self.directory / locale).glob("*.j2"))
            shops = [
                str(p.relative_to(self.directory))
                for shop in sorted(self.shops)
                for pattern in ("*.j2", f"{locale}/*.j2")
                for p in sorted((self.directory / "shops" / shop).glob(pattern))
            ]
            for name in dict.fromkeys([*names, *overrides, *shops]):
                try:
                    self.env(locale).get_template(name)
                    count += 1
                except jinja2.TemplateError as e:  # sending that template will say so
                    log.warning("template %s (%s) does not compile: %s", name, locale, e)
        return count

    def milestones(self, locale: str) -> list[str]:
        names = {p.name for p in self.directory.glob("*.txt.j2")}
        names.update(p.name for p in (self.directory / locale).glob("*.txt.j2"))
        return sorted(n[: -len(".txt.j2")] for n in names if not n.startswith("_"))

    def _template(self, locale: str, name: str, shop: str | None = None) -> jinja2.Template:
        try:
            return self.env(locale).get_template(self._shop_name(locale, name, shop))
        except jinja2.TemplateNotFound as e:
            raise TemplateMissing(f"no template {name!r} (locale {locale!r})") from e

    def _shop_name(self, locale: str, name: str, shop: str | None) -> str:
        """The shop's own template for ``name`` when it has one (its language's first), else ``name``."""
        if shop is None or shop not in self.shops:
            return name
        key = (locale, shop, name)
        found = self._shop_names.get(key)
        if found is None:
            found = name
            for candidate in (f"shops/{shop}/{locale}/{name}", f"shops/{shop}/{name}"):
                if (self.directory / candidate).is_file():
                    found = candidate
                    break
            self._shop_names[key] = found
        return found

    def _text_context(self, text: jinja2.Template, base: jinja2.Template, context: Mapping[str, Any]) -> Any:
        """A context for rendering ``text``'s blocks one by one; when ``text`` is a shop's template
        that extends ``base``, the blocks it leaves alone come from ``base`` (and ``super()`` works)."""
        ctx = text.new_context(dict(context))
        if text is not base:
            for name, block in base.blocks.items():
                ctx.blocks.setdefault(name, []).append(block)
        return ctx

    def render(
        self,
        milestone: str,
        locale: str | None,
        context: Mapping[str, Any],
        parts: Collection[str] | None = None,
        shop: str | None = None,
    ) -> Rendered:
        """The message's parts (``parts``: only those, the others left empty; None: all), in
        ``shop``'s own templates where it has them."""
        chosen = self.resolve_locale(locale)
        base = self._template(chosen, f"{milestone}.txt.j2")
        text = self._template(chosen, f"{milestone}.txt.j2", shop) if shop else base
        wanted = set(PARTS if parts is None else parts)
        try:
            out = dict.fromkeys(PARTS, "")
            for block in TEXT_BLOCKS:
                if block not in wanted:
                    continue
                ctx = self._text_context(text, base, context)
                render_block = (ctx.blocks.get(block) or [None])[0]
                if render_block is None:
                    raise RenderError(f"{milestone}.txt.j2 has no block {block!r}")
                out[block] = _clean("".join(render_block(ctx)), block)
            if "email_html" in wanted:
                out["email_html"] = self._template(chosen, f"{milestone}.html.j2", shop).render(dict(context))
        except jinja2.TemplateNotFound as e:
            raise TemplateMissing(str(e)) from e
        except jinja2.TemplateError as e:
            raise RenderError(f"{chosen}/{milestone}: {e}") from e
        return Rendered(
            chosen,
            out["sms"],
            out["push_title"],
            out["push_body"],
            out["email_subject"],
            out["email_text"],
            out["email_html"],
        )

    def render_block(self, locale: str | None, name: str, block: str, context: Mapping[str, Any]) -> str:
        """One block of ``<name>.txt.j2`` (e.g. a reply text), collapsed to one line."""
        chosen = self.resolve_locale(locale)
        template = self._template(chosen, f"{name}.txt.j2")
        try:
            render = template.blocks.get(block)
            if render is None:
                raise RenderError(f"{name}.txt.j2 has no block {block!r}")
            return _collapse("".join(render(template.new_context(dict(context)))))
        except jinja2.TemplateError as e:
            raise RenderError(f"{chosen}/{name}/{block}: {e}") from e


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _clean(text: str, block: str) -> str:
    text = text.strip()
    if block in ("sms", "push_title", "push_body", "email_subject"):
        # One paragraph: collapse template line breaks and runs of spaces.
        text = " ".join(text.split())
    return text


def page_environment(templates_dir: str, folder: str) -> jinja2.Environment:
    """The environment of one set of the hub's pages (``templates/<folder>``: the tracking page,
    the dashboard): sandboxed and autoescaped like the messages, undefined names an error."""
    return ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(Path(templates_dir) / folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

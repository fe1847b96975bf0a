"""Template rendering: a sandboxed Jinja2 environment with a locale fallback chain.

Layout of ``templates/``::

    _layout.html.j2              shared HTML e-mail layout (autoescaped)
    <locale>/<milestone>.txt.j2  blocks: sms, push_title, push_body, email_subject, email_text
    <locale>/<milestone>.html.j2 the HTML e-mail body (extends _layout.html.j2, autoescaped)

Plain-text templates are not autoescaped (an SMS must say "Tom's", not "Tom&#39;s"); HTML
templates are. Undefined variables are errors (``StrictUndefined``), so a typo in a template
fails loudly in tests instead of sending a message with a hole in it.

Errors: ``TemplateMissing`` (no template for the milestone in any locale of the chain),
``RenderError`` (the template raised while rendering); both subclass ``RenderFailure``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["RenderError", "RenderFailure", "Rendered", "Renderer", "TemplateMissing", "locale_chain"]

TEXT_BLOCKS = ("sms", "push_title", "push_body", "email_subject", "email_text")


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


def locale_chain(locale: str | None, default: str = "en") -> list[str]:
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


def _autoescape(name: str | None) -> bool:
    return bool(name and name.endswith(".html.j2"))


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates kept for the life of the process, shared by every Renderer: a worker
    (or a test) that builds a new Renderer does not compile the same templates again. Keyed by
    jinja2 on the template's name and source, so an edited template is compiled afresh."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

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
        self.env = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(self.directory)),
            autoescape=_autoescape,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
            bytecode_cache=COMPILED,
        )
        self.locales = sorted(p.name for p in self.directory.iterdir() if p.is_dir() and not p.name.startswith("_"))

    def resolve_locale(self, locale: str | None) -> str:
        """The first locale of the chain that has templates (falls back to the default)."""
        for candidate in locale_chain(locale, self.default_locale):
            if candidate in self.locales:
                return candidate
        return self.default_locale

    def milestones(self, locale: str) -> list[str]:
        files = (self.directory / locale).glob("*.txt.j2")
        return sorted(p.name[: -len(".txt.j2")] for p in files if not p.name.startswith("_"))

    def render(self, milestone: str, locale: str | None, context: Mapping[str, Any]) -> Rendered:
        chosen = None
        for candidate in locale_chain(locale, self.default_locale):
            if (self.directory / candidate / f"{milestone}.txt.j2").is_file():
                chosen = candidate
                break
        if chosen is None:
            raise TemplateMissing(f"no template for {milestone!r} (locale {locale!r})")
        try:
            text = self.env.get_template(f"{chosen}/{milestone}.txt.j2")
            html = self.env.get_template(f"{chosen}/{milestone}.html.j2")
            parts = {}
            for block in TEXT_BLOCKS:
                render_block = text.blocks.get(block)
                if render_block is None:
                    raise RenderError(f"{chosen}/{milestone}.txt.j2 has no block {block!r}")
                ctx = text.new_context(dict(context))
                parts[block] = _clean("".join(render_block(ctx)), block)
            parts["email_html"] = html.render(dict(context))
        except jinja2.TemplateNotFound as e:
            raise TemplateMissing(str(e)) from e
        except jinja2.TemplateError as e:
            raise RenderError(f"{chosen}/{milestone}: {e}") from e
        return Rendered(locale=chosen, **parts)

    def render_block(self, locale: str | None, name: str, block: str, context: Mapping[str, Any]) -> str:
        """One block of ``<locale>/<name>.txt.j2`` (e.g. a reply text), collapsed to one line."""
        for candidate in locale_chain(locale, self.default_locale):
            if (self.directory / candidate / f"{name}.txt.j2").is_file():
                break
        else:
            raise TemplateMissing(f"no template {name!r} (locale {locale!r})")
        try:
            template = self.env.get_template(f"{candidate}/{name}.txt.j2")
            render = template.blocks.get(block)
            if render is None:
                raise RenderError(f"{candidate}/{name}.txt.j2 has no block {block!r}")
            return _collapse("".join(render(template.new_context(dict(context)))))
        except jinja2.TemplateError as e:
            raise RenderError(f"{candidate}/{name}/{block}: {e}") from e


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _clean(text: str, block: str) -> str:
    text = text.strip()
    if block in ("sms", "push_title", "push_body", "email_subject"):
        # One paragraph: collapse template line breaks and runs of spaces.
        text = " ".join(text.split())
    return text

"""mkdocs hook: every ``<!-- aura:... -->`` marker of a page becomes the markdown that
``aura_lab.harness.report`` generates from the stored runs in data/results/."""

from aura_lab.harness import report


def on_page_markdown(markdown, page, config, files):
    return report.expand(markdown)

"""The README's fixed-width layout is the one the writer uses, to the byte."""

from pathlib import Path

from hub.export.formats import layout_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_documents_the_fixed_width_layout_the_writer_uses():
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- fixed-width layout:")
    start = text.index("\n", start) + 1
    end = text.index("<!-- end of fixed-width layout -->")
    assert text[start:end].strip() == layout_markdown().strip()

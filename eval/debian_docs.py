"""Build the multi-document eval corpus from Debian's documentation packages.

    python -m eval.debian_docs            # download, unpack, extract; writes eval/docs/*.txt
    python -m eval.debian_docs --check    # the same, and fail if a committed text differs

Real documents nobody here wrote, of four genres: Python's HOWTOs, its tutorial and its "What's
New" release notes (package ``python3.11-doc``, which ``python3-doc`` depends on) and chapters of
the Debian Reference (``debian-reference-en``). Each is fetched with ``apt-get download``,
unpacked with ``dpkg -x``, and its main HTML body turned into text by the project's own HTML
reader (``index_build.reading.html_to_text``), the same text a user's upload of that page gives.
The texts are committed, so an eval needs neither the network nor the packages; this script is
their provenance. ``eval/docs/SOURCES.md`` records each document's package, version, file,
sha256 and license, and which documents are sealed.

Sealed documents are chosen here, one per genre, by a seeded draw made before any question was
written: nothing may be chosen on them (``docs/evaluation.md``).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from index_build.reading import html_to_text
from rag.settings import PROJECT_ROOT

OUT = PROJECT_ROOT / "eval" / "docs"
PYTHON_DOC = "python3.11-doc"
PYTHON_HTML = "usr/share/doc/python3.11/html"
DEBIAN_REFERENCE = "debian-reference-en"
DEBIAN_HTML = "usr/share/debian-reference"
LICENSES = {
    PYTHON_DOC: "PSF License Agreement (Python documentation), "
                "/usr/share/doc/python3.11-doc/copyright",
    DEBIAN_REFERENCE: "GPL-2+ (Osamu Aoki, Debian Reference), "
                      "/usr/share/doc/debian-reference-en/copyright",
}
SEAL_SEED = 20261206


@dataclass(frozen=True)
class Source:
    name: str  # the document's id in the corpus and its gold questions' "doc"
    genre: str
    package: str
    path: str  # inside the unpacked package


SOURCES: tuple[Source, ...] = (
    Source("howto-sorting", "howto", PYTHON_DOC, f"{PYTHON_HTML}/howto/sorting.html"),
    Source("howto-ipaddress", "howto", PYTHON_DOC, f"{PYTHON_HTML}/howto/ipaddress.html"),
    Source("howto-sockets", "howto", PYTHON_DOC, f"{PYTHON_HTML}/howto/sockets.html"),
    Source("howto-unicode", "howto", PYTHON_DOC, f"{PYTHON_HTML}/howto/unicode.html"),
    Source("tutorial-errors", "tutorial", PYTHON_DOC, f"{PYTHON_HTML}/tutorial/errors.html"),
    Source("tutorial-modules", "tutorial", PYTHON_DOC, f"{PYTHON_HTML}/tutorial/modules.html"),
    Source("tutorial-floatingpoint", "tutorial", PYTHON_DOC,
           f"{PYTHON_HTML}/tutorial/floatingpoint.html"),
    Source("whatsnew-3.0", "release notes", PYTHON_DOC, f"{PYTHON_HTML}/whatsnew/3.0.html"),
    Source("whatsnew-3.1", "release notes", PYTHON_DOC, f"{PYTHON_HTML}/whatsnew/3.1.html"),
    Source("whatsnew-2.1", "release notes", PYTHON_DOC, f"{PYTHON_HTML}/whatsnew/2.1.html"),
    Source("debref-sysinit", "reference manual", DEBIAN_REFERENCE,
           f"{DEBIAN_HTML}/ch03.en.html"),
    Source("debref-auth", "reference manual", DEBIAN_REFERENCE, f"{DEBIAN_HTML}/ch04.en.html"),
    Source("debref-i18n", "reference manual", DEBIAN_REFERENCE, f"{DEBIAN_HTML}/ch08.en.html"),
)


def sealed_names(sources: tuple[Source, ...] = SOURCES) -> frozenset[str]:
    """One document per genre, drawn with a fixed seed."""
    draw = random.Random(SEAL_SEED)
    genres = sorted({s.genre for s in sources})
    return frozenset(draw.choice(sorted(s.name for s in sources if s.genre == g))
                     for g in genres)


# The page's own text: Sphinx's main body, DocBook's chapter; not the navigation around it.
_BODY = (
    re.compile(r'<div class="body" role="main">(.*?)<div class="sphinxsidebar"', re.S),
    re.compile(r'<div class="(?:chapter|preface|appendix)">(.*?)<div class="navfooter">', re.S),
)


def page_text(html: str) -> str:
    for pattern in _BODY:
        if match := pattern.search(html):
            html = match.group(1)
            break
    else:
        raise ValueError("no main body found in the page")
    return html_to_text(html).replace("¶", "").strip() + "\n"


def unpack(package: str, into: Path) -> str:
    """Download ``package`` with apt-get, unpack it into ``into``; its version."""
    subprocess.run(["apt-get", "download", package], cwd=into, check=True,
                   capture_output=True)
    deb = next(into.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(into / package)], check=True)
    return deb.name.split("_")[1]


def build(out: Path) -> dict[str, str]:
    """Write every document's text under ``out``; its text by name."""
    texts: dict[str, str] = {}
    lines = ["# Eval documents from Debian's documentation packages", "",
             "Written by `python -m eval.debian_docs` (the texts are the main body of each page, "
             "read by `index_build.reading.html_to_text`).", "",
             "| document | genre | split | package | file | sha256 of the text | license |",
             "|---|---|---|---|---|---|---|"]
    sealed = sealed_names()
    with tempfile.TemporaryDirectory(prefix="debian-docs-") as folder:
        root = Path(folder)
        versions = {p: unpack(p, root) for p in sorted({s.package for s in SOURCES})}
        for source in SOURCES:
            html = (root / source.package / source.path).read_text(encoding="utf-8")
            text = texts[source.name] = page_text(html)
            digest = hashlib.sha256(text.encode()).hexdigest()
            split = "sealed" if source.name in sealed else "fit"
            lines.append(f"| {source.name} | {source.genre} | {split} | {source.package} "
                         f"{versions[source.package]} | /{source.path} | `{digest[:16]}` | "
                         f"{LICENSES[source.package]} |")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (out / f"{name}.txt").write_text(text, encoding="utf-8")
    (out / "SOURCES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.debian_docs", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="build into a temporary folder and compare with eval/docs")
    args = parser.parse_args(argv)
    if not args.check:
        build(OUT)
        print(f"wrote {len(SOURCES)} documents to {OUT}")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        texts = build(Path(folder))
    changed = [n for n, t in texts.items()
               if (OUT / f"{n}.txt").read_text(encoding="utf-8") != t]
    print("every committed text matches its package" if not changed
          else f"differ from their packages: {', '.join(changed)}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())

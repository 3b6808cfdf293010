"""The ``rag`` command line: a thin layer over the index builder and ``Pipeline.ask``.

All expected failures surface as ``RagError`` and are turned into a one-line message and exit
code 2 in ``main``; anything else is an internal error (exit 1, traceback only with RAG_DEBUG=1).
Heavy modules (the index builder, the pipeline, the server) are imported by the commands that
use them, so ``rag --help`` and ``rag index info`` start at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import traceback
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import msgspec

from rag.errors import InputError, ModelNotFoundError, RagError, UnreadableDocumentsError
from rag.settings import Settings
from rag.types import Answer, Question, Turn

if TYPE_CHECKING:
    from index_build.build import BuildResult
    from rag.pipeline import Pipeline

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
HISTORY_FILE = Path.home() / ".cache" / "grounded-rag" / "chat_history"

Command = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.command, args)


def run_command(command: Command, args: argparse.Namespace) -> int:
    """``command`` with the settings the environment and ``args`` give; every failure becomes
    one line and an exit code here (the eval harness's command line shares it)."""
    try:
        return command(args, settings_from(args))
    except RagError as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rag: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the error boundary: no traceback for users
        if os.environ.get("RAG_DEBUG"):
            traceback.print_exc()
        print(f"rag: internal error: {type(exc).__name__}: {exc} (RAG_DEBUG=1 shows details)",
              file=sys.stderr)
        return EXIT_INTERNAL


# What a flag says beyond its default; every setting has a flag (and a RAG_<NAME> variable).
FLAG_HELP = {
    "index_dir": "index folder",
    "llm": "which bundled generator",
    "model_path": "any GGUF file; overrides --llm",
    "top_k": "passages given to the model",
    "prompt": "retrieval-layout prompt in prompts/",
    "prompt_mode": "retrieved passages read in full (retrieval), the same with all but the best "
                   "two from stored KV states (reuse), the whole corpus as a cached prefix "
                   "(corpus), or corpus when it fits RAG_CORPUS_MAX_TOKENS (auto)",
    "min_confidence": "refuse answers whose estimated P(right) is below this (default: the "
                      "value chosen for the model)",
    "n_threads": "CPU threads for decoding (0 = all)",
    "chunk_tokens": "max tokens per chunk",
    "chunk_overlap": "tokens shared by consecutive chunks",
    "host": "address to bind",
    "port": "port to serve on",
}
# Keys are never taken on a command line, where other users of the machine can read them.
NO_FLAG = {"api_keys", "admin_keys"}
# Shorter names kept for flags that had them.
ALIASES = {"n_threads": ["--threads"]}


def settings_parser() -> argparse.ArgumentParser:
    """A flag for every setting (but keys), as a parent parser of every command; each is parsed
    as its RAG_<NAME> variable is (``rag.settings``)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("settings (each also readable from RAG_<NAME>)")
    hints = typing.get_type_hints(Settings)
    for name, spec in Settings.__dataclass_fields__.items():
        if name in NO_FLAG:
            continue
        default = spec.default if spec.default is not dataclasses.MISSING else None
        shown = "" if default is None else f" (default {default})"
        hint = hints[name]
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else None
        group.add_argument(f"--{name.replace('_', '-')}", *ALIASES.get(name, []), dest=name,
                           choices=choices, metavar=None if choices else name.upper(),
                           help=FLAG_HELP.get(name, name.replace("_", " ")) + shown)
    return common


def settings_from(args: argparse.Namespace) -> Settings:
    """Defaults, then RAG_* variables, then the flags given."""
    flags = {name: getattr(args, name) for name in Settings.__dataclass_fields__
             if getattr(args, name, None) is not None}
    return Settings.from_env(flags=flags)


def build_parser() -> argparse.ArgumentParser:
    common = settings_parser()
    parser = argparse.ArgumentParser(
        prog="rag", description="Grounded question answering over local documents, offline."
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    engine = argparse.ArgumentParser(add_help=False)
    engine.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="read, chunk and embed in this process (default) or on Ray")
    engine.add_argument("--address", help="Ray cluster to use with --engine ray "
                                          "(default: start a local Ray instance)")

    index = commands.add_parser("index", help="build, change or describe the index")
    index_commands = index.add_subparsers(required=True, metavar="ACTION")
    build = index_commands.add_parser(
        "build", parents=[common, engine],
        help="index exactly these files or folders (unchanged documents are not embedded again)")
    build.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                       help=".txt, .md, .html, .pdf, .docx files or folders "
                            "(default: the bundled article)")
    build.set_defaults(command=cmd_index_build)
    add = index_commands.add_parser(
        "add", parents=[common, engine],
        help="add files or folders to the index (a document with the same id is replaced)")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                     help=".txt, .md, .html, .pdf, .docx files or folders")
    add.set_defaults(command=cmd_index_add)
    remove = index_commands.add_parser("remove", parents=[common],
                                       help="drop documents from the index by id")
    remove.add_argument("doc_ids", nargs="+", metavar="DOC_ID",
                        help="document ids as `rag index list` lists them")
    remove.set_defaults(command=cmd_index_remove)
    listing = index_commands.add_parser("list", parents=[common],
                                        help="list the indexed documents (uploads included)")
    listing.add_argument("--json", action="store_true", help="print them as JSON")
    listing.set_defaults(command=cmd_index_list)
    info = index_commands.add_parser("info", parents=[common], help="describe the index")
    info.set_defaults(command=cmd_index_info)

    ask = commands.add_parser("ask", parents=[common], help="answer one question")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print the Answer JSON")
    ask.set_defaults(command=cmd_ask)

    chat = commands.add_parser("chat", parents=[common], help="interactive questions")
    chat.set_defaults(command=cmd_chat)

    serve = commands.add_parser("serve", parents=[common], help="run the HTTP service")
    serve.set_defaults(command=cmd_serve)


    doctor = commands.add_parser("doctor", parents=[common],
                                 help="check that llama.cpp and the models run on this machine")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(command=cmd_doctor)

    models = commands.add_parser("models", help="install or verify the generator models")
    model_commands = models.add_subparsers(required=True, metavar="ACTION")
    install = model_commands.add_parser("install", parents=[common],
                                        help="assemble and verify the GGUF files")
    install.add_argument("which", nargs="?", choices=["default", "small", "all"], default="all")
    install.set_defaults(command=cmd_models_install)
    verify = model_commands.add_parser("verify", parents=[common],
                                       help="hash the installed GGUF files in full")
    verify.add_argument("which", nargs="?", choices=["default", "small", "all"], default="all")
    verify.set_defaults(command=cmd_models_verify)
    return parser


def cmd_index_build(args: argparse.Namespace, settings: Settings) -> int:
    from index_build.build import build_index

    return _report_build(lambda: build_index(
        settings, args.paths, progress=sys.stderr.isatty(), engine=args.engine,
        address=args.address))


def cmd_index_add(args: argparse.Namespace, settings: Settings) -> int:
    from index_build.build import add_documents

    return _report_build(lambda: add_documents(
        settings, args.paths, progress=sys.stderr.isatty(), engine=args.engine,
        address=args.address))


def cmd_index_remove(args: argparse.Namespace, settings: Settings) -> int:
    from index_build.uploads import remove_documents_and_files

    return _report_build(lambda: remove_documents_and_files(settings, args.doc_ids))


def _report_build(build: Callable[[], BuildResult]) -> int:
    """Run a build and say what it did; each file that failed gets a line of its own."""
    try:
        result = build()
    except UnreadableDocumentsError as exc:
        for failure in exc.failures:
            print(f"rag: {failure}", file=sys.stderr)
        raise
    m = result.manifest
    if result.status == "unchanged":
        print(f"Index at {result.index_dir} is up to date ({m.chunk_count} chunks).")
        return EXIT_OK
    changed = sum(not d.reused for d in m.documents)
    removed = f", removed {len(m.removed)} document(s)" if m.removed else ""
    print(f"Indexed {len(m.documents)} document(s) into {m.chunk_count} chunks at "
          f"{result.index_dir} in {m.build_seconds:.1f} s: embedded {m.embedded_chunks} "
          f"chunk(s) of {changed} new or changed document(s), reused {m.reused_chunks}{removed}.")
    return EXIT_OK


def cmd_index_list(args: argparse.Namespace, settings: Settings) -> int:
    from rag.retrieval.store import read_manifest

    documents = read_manifest(settings.index_dir).documents
    if args.json:
        listed = msgspec.to_builtins([d.listing() for d in documents])
        print(json.dumps(listed, indent=2, ensure_ascii=False))
        return EXIT_OK
    for d in documents:
        pages = f", {d.pages} pages" if d.pages else ""
        name = f"  ({d.name})" if d.name and d.name != d.doc_id else ""
        print(f"{d.doc_id}{name}: {d.kind or '?'}, {d.bytes:,} bytes{pages}, {d.chunks} chunks, "
              f"added {d.added_at or 'before this was recorded'}")
    return EXIT_OK


def cmd_index_info(args: argparse.Namespace, settings: Settings) -> int:
    from rag.retrieval.store import read_manifest

    print(json.dumps(read_manifest(settings.index_dir).to_dict(), indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    question = Question.checked(args.question, settings)
    pipeline = _load_pipeline(settings)
    answer = pipeline.ask(question)
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(format_answer(answer))
    return EXIT_OK


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    _enable_history()
    pipeline = _load_pipeline(settings)
    print("Ask about the indexed documents; follow-up questions may refer to earlier ones. "
          "/new starts over, /quit exits.")
    history: list[Turn] = []
    while True:
        try:
            question = input("\nyou> ").strip()
        except EOFError:
            print()
            return EXIT_OK
        if question in {"/quit", "/exit", "/q"}:
            return EXIT_OK
        if question == "/new":
            history = []
            continue
        if not question:
            continue
        try:
            answer = pipeline.ask(Question.checked(question, settings, history=history))
        except InputError as exc:
            print(f"rag: {exc}")
            continue
        print(format_answer(answer))
        history += [Turn("user", answer.standalone_question or question),
                    Turn("assistant", answer.answer)]


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    import uvicorn

    from rag.serve import logs
    from rag.serve.app import create_app
    from rag.serve.auth import load_keys

    _limit_malloc_arenas()
    service_log = logging.getLogger("rag")
    service_log.addHandler(logs.handler(settings.log_format, sys.stderr))
    service_log.setLevel(logging.INFO)
    service_log.propagate = False
    app = create_app(settings)
    if not load_keys(settings).required and settings.host not in LOOPBACK:
        print(f"rag: WARNING: serving on {settings.host}, reachable from other machines, with no "
              "API key: anyone who can reach it can read your documents through it. Set "
              "RAG_API_KEYS or RAG_API_KEYS_FILE.", file=sys.stderr)
    print(f"Serving on http://{settings.host}:{settings.port} — the web page is at that URL, "
          "the API docs at /schema; loading the index and models…", file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port,
                log_level="warning", access_log=False)
    return EXIT_OK


def _limit_malloc_arenas() -> None:
    """Cap glibc's per-thread malloc arenas before worker threads start.

    Each request thread otherwise grows its own arena: measured here, 16 concurrent clients took
    the service from 1.0 to 2.4 GB RSS; with two arenas it stays at 1.45 GB (docs/performance.md).
    """
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    if libc_name:
        m_arena_max = -8
        ctypes.CDLL(libc_name).mallopt(m_arena_max, 2)


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from rag.llm import doctor

    report = doctor.examine(settings)
    print(json.dumps(report.to_dict(), indent=2) if args.json else doctor.render(report))
    if not report.ok:
        print(f"rag: error: {doctor.first_failure(report)}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def cmd_models_install(args: argparse.Namespace, settings: Settings) -> int:
    from rag.llm import model_files

    for name in _model_names(args.which):
        spec = model_files.KNOWN_MODELS[name]
        path = model_files.install(spec, settings.model_dir)
        print(f"{name}: {spec.name} ready at {path}")
    return EXIT_OK


def cmd_models_verify(args: argparse.Namespace, settings: Settings) -> int:
    from rag.llm import model_files

    for name in _model_names(args.which):
        spec = model_files.KNOWN_MODELS[name]
        path = settings.model_dir / spec.filename
        if not path.is_file():
            raise ModelNotFoundError(
                f"{name}: {path} is missing: {model_files.INSTALL_HINT}"
            )
        model_files.verify(path, spec)
        print(f"{name}: {path} matches sha256 {spec.sha256[:12]}…")
    return EXIT_OK


def _model_names(which: str) -> list[str]:
    return ["default", "small"] if which == "all" else [which]


def _load_pipeline(settings: Settings) -> Pipeline:
    from index_build.build import ensure_default_index
    from rag.factory import load_pipeline

    ensure_default_index(settings, announce=lambda msg: print(msg, file=sys.stderr))
    return load_pipeline(settings)


def format_answer(answer: Answer) -> str:
    marks = "".join(f" [{c.id}]" for c in answer.citations)
    lines = [f"(searching for: {answer.standalone_question})"] if answer.standalone_question else []
    lines.append(answer.answer + marks)
    if answer.confidence is not None:
        lines.append(f"(confidence that this is right: {answer.confidence:.2f})")
    for c in answer.citations:
        page = f", page {c.page}" if c.page is not None else ""
        lines.append(f"\n[{c.id}] {c.source}{page}, characters {c.start}-{c.end}:")
        lines.append(f'    "{" ".join(c.quote.split())}"')
    return "\n".join(lines)


def _enable_history() -> None:
    try:
        import readline
    except ImportError:  # not every Python build has it; chat works without history
        return
    HISTORY_FILE.parent.mkdir(parents=True, exist_ok=True)
    try:
        readline.read_history_file(HISTORY_FILE)
    except OSError:
        pass
    readline.set_history_length(1000)
    import atexit

    atexit.register(readline.write_history_file, HISTORY_FILE)


if __name__ == "__main__":
    sys.exit(main())

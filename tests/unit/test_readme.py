"""The README shows only what exists: its settings, commands, routes and make targets (no model)."""

import argparse
import dataclasses
import re

from rag.cli import build_parser
from rag.serve.app import create_app
from rag.settings import ENV_PREFIX, PROJECT_ROOT, Settings

PROJECT = PROJECT_ROOT
README = (PROJECT / "README.md").read_text(encoding="utf-8")


def test_the_readme_stays_short() -> None:
    assert len(README.splitlines()) <= 300


def test_every_setting_is_in_the_readme_and_every_named_one_exists() -> None:
    named = set(re.findall(r"\bRAG_[A-Z0-9_]+\b", README)) - {"RAG_DEBUG"}
    settings = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    assert not settings - named, f"settings the README does not document: {settings - named}"
    assert not named - settings, f"the README names settings that do not exist: {named - settings}"


def test_every_rag_command_the_readme_shows_exists() -> None:
    shown = re.findall(r"^\s*(?:\.venv/bin/)?rag ((?:index |models )?[a-z]+)", README, re.M)
    assert shown
    for command in shown:
        parser: argparse.ArgumentParser = build_parser()
        for word in command.split():
            choices = next(a.choices for a in parser._actions
                           if isinstance(a, argparse._SubParsersAction))
            assert word in choices, f"`rag {command}`: no such command"
            parser = choices[word]


def test_every_route_the_readme_shows_exists() -> None:
    app = create_app(Settings())
    routes = {route.path for route in app.routes}
    shown = set(re.findall(r"`(?:GET|POST) (/[a-z0-9/_.]*)`", README))
    assert shown and not shown - routes - {"/static/"}, shown - routes


def test_every_make_target_the_readme_names_exists() -> None:
    makefile = (PROJECT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    shown = set(re.findall(r"`make ([a-z-]+)", README))
    assert shown and not shown - targets, shown - targets

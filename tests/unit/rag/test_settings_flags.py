"""Every setting has a command-line flag, made from its field and parsed as its RAG_<NAME>
variable is; keys have none (a command line is visible to every user of the machine)."""

import dataclasses

import pytest

from rag.cli import NO_FLAG, build_parser, settings_from
from rag.errors import SettingsError
from rag.settings import Settings


def _settings(*argv: str, environ: dict[str, str] | None = None) -> Settings:
    flags = {k: v for k, v in vars(build_parser().parse_args(argv)).items() if v is not None}
    return Settings.from_env(environ or {}, flags={k: v for k, v in flags.items()
                                                   if k in Settings.__dataclass_fields__})


def test_every_setting_but_the_keys_has_a_flag() -> None:
    args = vars(build_parser().parse_args(["ask", "hi"]))
    named = {f.name for f in dataclasses.fields(Settings)}
    assert named - NO_FLAG <= set(args)
    assert not NO_FLAG & set(args)


def test_a_flag_is_parsed_like_its_variable_and_wins_over_it() -> None:
    settings = _settings("serve", "--max-queue", "3", "--threads", "1", "--flash-attn", "yes",
                         "--index-dir", "~/idx", environ={"RAG_MAX_QUEUE": "9", "RAG_PORT": "9"})
    assert (settings.max_queue, settings.n_threads, settings.flash_attn) == (3, 1, True)
    assert settings.port == 9 and settings.index_dir.is_absolute()
    assert settings_from(build_parser().parse_args(["serve", "--port", "9001"])).port == 9001


def test_a_bad_flag_value_names_the_flag() -> None:
    with pytest.raises(SettingsError, match="--top-k 'many' is not valid"):
        _settings("ask", "hi", "--top-k", "many")
    with pytest.raises(SystemExit):  # a closed set of values is argparse's to refuse
        build_parser().parse_args(["ask", "hi", "--prompt-mode", "nope"])

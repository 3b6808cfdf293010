"""Prompt-lookup guesses: what followed the answer's longest tail where it first occurs in the
prompt."""

from rag.answer.drafting import prompt_lookup

PROMPT = [1, 2, 3, 4, 5, 9, 2, 3, 7, 8]


def test_the_longest_tail_found_in_the_prompt_gives_what_followed_it() -> None:
    assert prompt_lookup(PROMPT, [9, 2, 3], 3) == [7, 8]  # the three-token tail, not "2 3 4"
    assert prompt_lookup(PROMPT, [6, 2, 3], 2) == [4, 5]  # "6 2 3" nowhere: "2 3" where it first is


def test_no_guess_without_a_match_or_without_room() -> None:
    assert prompt_lookup(PROMPT, [6], 4) == []
    assert prompt_lookup(PROMPT, [2], 0) == []
    assert prompt_lookup(PROMPT, [8], 4) == []  # the prompt's last token: nothing followed it

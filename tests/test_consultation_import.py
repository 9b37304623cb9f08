"""Importing consultation files (CLI and an administrator's upload in chat): nesting bounds,
re-imports that drop questions, slug conflicts, unchanged files."""

from __future__ import annotations

import pytest

from bot.consultation_file import (
    MAX_NESTING_DEPTH,
    ConsultationFileError,
    parse_consultation_text,
)
from storage.models import Consultation
from tests.support.moderation import ADMIN, chats, rows, sapp, tr  # noqa: F401

DEEP = [
    "[" * 100_000,
    "a: " + "[" * 60_000 + "]" * 60_000,
    "".join("  " * depth + "-\n" for depth in range(MAX_NESTING_DEPTH + 5)),
    "{a: " * 50_000,
]


@pytest.mark.parametrize("text", DEEP, ids=["brackets", "in-a-key", "block", "braces"])
def test_deep_nesting_is_refused_before_python_recursion(text):
    # The old loader recursed until RecursionError (24 s for 100k brackets).
    with pytest.raises(ConsultationFileError) as caught:
        parse_consultation_text(text, "deep.yaml")
    message = str(caught.value)
    assert message.startswith("deep.yaml: line ")
    assert f"nested too deeply (at most {MAX_NESTING_DEPTH} levels)" in message


def test_nesting_within_the_bound_still_parses_to_a_field_error():
    text = "slug: x\nquestions: " + "[" * (MAX_NESTING_DEPTH - 2) + "]" * (MAX_NESTING_DEPTH - 2)
    with pytest.raises(ConsultationFileError) as caught:
        parse_consultation_text(text, "ok.yaml")
    assert "nested too deeply" not in str(caught.value)


def test_deep_nesting_uploaded_in_chat_is_refused_and_changes_nothing(sapp):  # noqa: F811
    admin = chats(sapp)(ADMIN)
    before = [c.document for c in rows(sapp, Consultation)]
    replies = admin.send_file("deep.yaml", b"[" * 100_000)
    assert tr("en", "This consultation file has errors; nothing was changed:") in replies.text
    assert "deep.yaml: line 1" in replies.text and "nested too deeply" in replies.text
    assert replies.actions() == []
    assert [c.document for c in rows(sapp, Consultation)] == before

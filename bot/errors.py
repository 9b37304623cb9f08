"""Named domain errors. Services raise them; the router's middleware turns them into a
translated reply, and nothing has changed (the transaction is rolled back)."""

from __future__ import annotations

from typing import Any

from bot.i18n import N_, gettext


class DomainError(Exception):
    """Base class. ``msgid`` is an English gettext message id with ``{named}`` fields."""

    msgid: str = N_("Sorry, that is not possible right now.")

    def __init__(self, **params: Any) -> None:
        super().__init__(self.msgid.format(**params) if params else self.msgid)
        self.params = params

    def translated(self) -> str:
        return gettext(self.msgid).format(**self.params)


class NoConsultation(DomainError):
    msgid = N_("There is no consultation to take part in yet.")


class UnknownConsultation(DomainError):
    msgid = N_("I don't know a consultation called “{slug}”. Type /start to see the current one.")


class ConsultationNotOpen(DomainError):
    msgid = N_("This consultation opens on {date}. Come back then!")


class ConsultationClosed(DomainError):
    msgid = N_(
        "This consultation closed on {date}: contributions, supports and comments are no "
        "longer accepted. Type /stats to see its results."
    )


class UnknownQuestion(DomainError):
    msgid = N_("That question does not exist in this consultation.")


class UnknownContribution(DomainError):
    msgid = N_("I can't find contribution #{id}. It may have been withdrawn.")


class ContributionNotAvailable(DomainError):
    msgid = N_("Contribution #{id} is not available any more (withdrawn or hidden).")


class EmptyText(DomainError):
    msgid = N_("Your message is empty. Please write a few words.")


class InvisibleText(EmptyText):
    msgid = N_(
        "Your message only contains spaces or invisible characters. Please write a few words."
    )


class TextTooLong(DomainError):
    msgid = N_("Your text is {length} characters long; the limit is {limit}. Please shorten it.")


class AlreadySupported(DomainError):
    msgid = N_("You already support contribution #{id}.")


class NotSupported(DomainError):
    msgid = N_("You do not support contribution #{id}.")


class OwnContribution(DomainError):
    msgid = N_("You cannot support your own contribution.")


class WithdrawalNotAllowed(DomainError):
    msgid = N_("In this consultation a support cannot be withdrawn once given (like a signature).")


class CommentsDisabled(DomainError):
    msgid = N_("Comments are turned off in this consultation.")


class NotYourContribution(DomainError):
    msgid = N_("Contribution #{id} is not yours.")


class NotAModerator(DomainError):
    msgid = N_("This command is reserved for the consultation's moderators.")


class StaleAction(DomainError):
    msgid = N_(
        "That button is from an old message and no longer works. Type /start to begin again."
    )


class QuestionsWithContributionsLeftOut(DomainError):
    msgid = N_(
        "This file leaves out questions that already have contributions (their number in "
        "brackets): {questions}. Keep them in the file, or archive them on purpose with "
        "`parlons consultation import --archive-missing` (their contributions stay visible). "
        "Nothing was changed."
    )


class SlugTaken(DomainError):
    msgid = N_(
        "The slug “{slug}” belongs to a different consultation (“{title}”). Give this file "
        "another slug, or replace that consultation on purpose with `parlons consultation "
        "import --replace`. Nothing was changed."
    )


class NothingToConfirm(DomainError):
    msgid = N_(
        "There is nothing to confirm right now. To take part, type /participate: I will ask "
        "you the questions one by one and show you your contribution before publishing it."
    )


class NoSuchPage(DomainError):
    msgid = N_("There is no page {n}: pages go from 1 to {total}.")

"""The Telegram commands menu (``setMyCommands``), built from the dispatcher's command metadata.

- Everyone: the citizens' commands, per language (``fr``, ``en``) and without a language (the
  default locale, for every other Telegram language).
- Groups: the same without the private-only commands (participation happens in private).
- Moderators and administrators: their own list in their private chat with the bot
  (``BotCommandScopeChat``), which Telegram prefers over the general lists, and the moderators'
  list in the moderators' chats (``/modchat``). :func:`desired_menus` says which chat gets which
  menu (administrators from ``settings.admins``, moderators and moderators' chats from the
  engine); the service applies the differences at start and then every minute, remembering
  what it set in ``ChannelState`` so a moderator removed while the bot was down loses the menu
  too. :func:`set_chat_commands` does it for a list of chats and a role.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from telegram import (
    Bot,
    BotCommand,
    BotCommandScope,
    BotCommandScopeAllGroupChats,
    BotCommandScopeChat,
    BotCommandScopeDefault,
)

from bot.i18n import SUPPORTED, use_locale
from bot.i18n import gettext as _
from bot.router import CommandSpec, Dispatcher, Role

log = logging.getLogger(__name__)

MAX_COMMANDS = 100
MAX_DESCRIPTION = 256


def command_list(
    dispatcher: Dispatcher, role: Role, locale: str, *, groups: bool = False
) -> list[BotCommand]:
    """The menu for ``role`` in ``locale`` (for groups: without the private-only commands)."""
    specs: list[CommandSpec] = dispatcher.visible_commands(role)
    out: list[BotCommand] = []
    with use_locale(locale):
        for spec in specs:
            if groups and spec.private_only:
                continue
            description = _(spec.help).strip() or spec.name
            if len(description) > MAX_DESCRIPTION:
                description = description[: MAX_DESCRIPTION - 1] + "…"
            out.append(BotCommand(spec.name, description))
    return out[:MAX_COMMANDS]


async def _set(
    bot: Bot, commands: list[BotCommand], scope: BotCommandScope, language: str | None
) -> None:
    if commands:
        await bot.set_my_commands(commands, scope=scope, language_code=language)
    else:
        await bot.delete_my_commands(scope=scope, language_code=language)


async def set_default_commands(bot: Bot, dispatcher: Dispatcher, default_locale: str) -> None:
    """The citizens' menu everywhere, and the group menu, in every supported language."""
    scopes: list[tuple[BotCommandScope, bool]] = [
        (BotCommandScopeDefault(), False),
        (BotCommandScopeAllGroupChats(), True),
    ]
    for scope, groups in scopes:
        await _set(
            bot, command_list(dispatcher, Role.CITIZEN, default_locale, groups=groups), scope, None
        )
        for locale in SUPPORTED:
            commands = command_list(dispatcher, Role.CITIZEN, locale, groups=groups)
            await _set(bot, commands, scope, locale)


async def set_chat_commands(
    bot: Bot,
    dispatcher: Dispatcher,
    chat_ids: Iterable[int | str],
    role: Role,
    default_locale: str,
) -> None:
    """Give these private chats (moderators, administrators) the menu of ``role``; with
    ``Role.CITIZEN`` their own menu is removed and they see the citizens' one again."""
    for chat_id in chat_ids:
        scope = BotCommandScopeChat(int(chat_id))
        if role == Role.CITIZEN:
            await bot.delete_my_commands(scope=scope)
            for locale in SUPPORTED:
                await bot.delete_my_commands(scope=scope, language_code=locale)
            continue
        await _set(bot, command_list(dispatcher, role, default_locale), scope, None)
        for locale in SUPPORTED:
            await _set(bot, command_list(dispatcher, role, locale), scope, locale)


# ChannelState key: the per-chat menus this bot has set, {chat id: signature}.
MENUS_KEY = "telegram:chat-menus"


def menu_signature(dispatcher: Dispatcher, role: Role, default_locale: str) -> str:
    """Changes when the role's menu changes (a role, a command or a translation)."""
    parts = [str(int(role))]
    for locale in (default_locale, *SUPPORTED):
        parts += [f"{c.command}={c.description}" for c in command_list(dispatcher, role, locale)]
    return f"{int(role)}:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def desired_menus(moderating: Iterable[str], admins: Iterable[int]) -> dict[str, Role]:
    """Which chat shows which role's menu: moderators' private chats and the moderators'
    chats (``moderating``, from the engine) get the moderators' menu; administrators
    (``settings.admins``) get theirs."""
    out: dict[str, Role] = {str(chat_id): Role.MODERATOR for chat_id in moderating}
    for admin in admins:
        out[str(admin)] = Role.ADMIN
    return out


def admin_chat_ids(admins: Iterable[str]) -> list[int]:
    """Telegram administrators from ``settings.admins`` (``telegram:<numeric id>``)."""
    out: list[int] = []
    for entry in admins:
        platform, _sep, user_id = entry.partition(":")
        if platform == "telegram" and user_id.lstrip("-").isdigit():
            out.append(int(user_id))
    return out

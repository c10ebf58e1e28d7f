"""Load content and the dialog together and check they fit; one place for start-up."""

from __future__ import annotations

from pathlib import Path

from bot import paths
from bot.config import DEFAULT_RETENTION_DAYS
from bot.content import TIP_TAG, Content, load_content
from bot.dialog import Dialog, load_dialog
from bot.engine import Engine
from bot.errors import DataError
from bot.safety import check_dialog

DIALOG_FILE = "screening.yaml"


def load_bundle(dialog_path: Path | None = None, content_path: Path | None = None,
                *, retention_days: int = DEFAULT_RETENTION_DAYS) -> tuple[Dialog, Content]:
    content_path = content_path or paths.content_dir()
    dialog_path = dialog_path or paths.dialogs_dir() / DIALOG_FILE
    content = load_content(content_path, {"retention_days": retention_days})
    dialog = load_dialog(dialog_path, content)
    _check_cards_used(dialog, content, content_path / "advice.yaml")
    return dialog, content


def load_engine(dialog_path: Path | None = None, content_path: Path | None = None,
                *, retention_days: int = DEFAULT_RETENTION_DAYS) -> Engine:
    dialog, content = load_bundle(dialog_path, content_path, retention_days=retention_days)
    return Engine(dialog, content)


def load_checked_engine(dialog_path: Path | None = None, content_path: Path | None = None,
                        *, retention_days: int = DEFAULT_RETENTION_DAYS) -> Engine:
    """The engine for talking to people: only for a dialog that passes every safety
    proof of `backbot check`, so an edited dialog that fails one is never served."""
    dialog, content = load_bundle(dialog_path, content_path, retention_days=retention_days)
    for finding in check_dialog(dialog, content):
        if not finding.ok:
            more = len(finding.problems) - 1
            problem = finding.problems[0].removeprefix(f"{dialog.path} ")
            raise DataError(dialog.path, f"fails the safety check ({finding.name}) "
                            f"{finding.title}: {problem}"
                            + (f" (and {more} more)" if more else "")
                            + "; `backbot check` lists every problem")
    return Engine(dialog, content)


def _check_cards_used(dialog: Dialog, content: Content, advice_path: Path) -> None:
    shown = {item.ref for spec in dialog.states.values() for item in spec.show
             if item.kind == "card"}
    for card in content.cards.values():
        if card.id not in shown and TIP_TAG not in card.tags:
            raise DataError(advice_path, f"card {card.id} is never shown (not in the dialog "
                            f"and not tagged {TIP_TAG})")

"""Where the shipped dialogs and content live, in a checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_root() -> Path:
    """The folder holding `dialogs/` and `content/`.

    A wheel carries them in `bot/_data`; a checkout (or editable install) has them
    beside the package.
    """
    installed = _PACKAGE / "_data"
    if (installed / "dialogs").is_dir():
        return installed
    return _PACKAGE.parent


def dialogs_dir() -> Path:
    return data_root() / "dialogs"


def content_dir() -> Path:
    return data_root() / "content"

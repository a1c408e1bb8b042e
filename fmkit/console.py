"""What a person sees while fmkit works: progress bars on a terminal only, and each warning once.

**Progress.** Every long-running function of fmkit (``synthesize``, ``preprocess``, ``train``,
``evaluate_run``, ``predict``) takes a ``progress`` setting:

- ``True``: a tqdm bar (``tqdm.auto``: a text bar on a terminal, a widget in JupyterLab);
- ``False``: no bar;
- ``None`` (the default of the commands): :func:`progress_enabled` decides: the environment
  variable ``FMKIT_PROGRESS`` when it is set (``1``/``0``), else a bar when standard error is a
  terminal, so that a log file, a CI log or a notebook kernel gets none.

The numbered notebooks declare a ``progress`` parameter that they pass to these functions;
``fmkit pipeline`` sets it to ``False`` (and ``FMKIT_PROGRESS=0`` in its kernels), because a widget
in an executed notebook stays frozen in the state it was saved in.

**Warnings.** Python shows a warning again whenever a ``warnings.catch_warnings`` block ran in
between (the metrics, scikit-learn and torch use many), even under the ``once`` filter, so the same
text can fill a cell or a log. :func:`warnings_once` (the command line) and the IPython extension of
this module (the pipeline's kernels; ``%load_ext fmkit.console`` in JupyterLab) show each
(text, category) once per process; the filters still decide which warnings are shown at all.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

#: Environment variable that overrides the automatic choice (``1``: bars, ``0``: none).
PROGRESS_ENV = "FMKIT_PROGRESS"
_ON, _OFF = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default ``sys.stderr``) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_enabled(progress: bool | None = None) -> bool:
    """Resolve a ``progress`` setting: itself when given, else ``FMKIT_PROGRESS``, else whether stderr is a terminal."""
    if progress is not None:
        return bool(progress)
    value = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    return is_terminal()


def progress_bar(iterable: Iterable[Any] | None = None, *, progress: bool | None = None, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` bar over ``iterable``, disabled unless :func:`progress_enabled` says so (``disable``
    in ``kwargs`` also disables it)."""
    from tqdm.auto import tqdm

    disable = kwargs.pop("disable", False) or not progress_enabled(progress)
    return tqdm(iterable, disable=disable, **kwargs)


class _ShowOnce:
    """A ``warnings.showwarning`` that passes each (text, category) to ``show`` the first time only."""

    def __init__(self, show: Callable[..., None]) -> None:
        self.show, self.seen = show, set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        key = (str(message), category)
        if key not in self.seen:
            self.seen.add(key)
            self.show(message, category, filename, lineno, file, line)


def show_warnings_once() -> None:
    """From now on, show each warning text (per category) once in this process."""
    if not isinstance(warnings.showwarning, _ShowOnce):
        warnings.showwarning = _ShowOnce(warnings.showwarning)


@contextlib.contextmanager
def warnings_once() -> Iterator[None]:
    """Within the block, each warning text (per category) is shown once; the hook is removed after it."""
    if isinstance(warnings.showwarning, _ShowOnce):
        yield
        return
    original = warnings.showwarning
    warnings.showwarning = _ShowOnce(original)
    try:
        yield
    finally:
        warnings.showwarning = original


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext fmkit.console`` (and ``fmkit pipeline``'s kernels): each warning text once."""
    show_warnings_once()

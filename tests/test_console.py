"""What a person sees while fmkit works: progress bars on a terminal only, each warning once, the pipeline's lines."""

import io
import warnings

import pytest

from fmkit import console
from fmkit.pipeline import _Console, _previous_seconds, duration, kernel_config, kernel_manager_class


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "setting, env, tty, shown",
    [
        (True, "0", False, True),  # an explicit setting wins
        (False, "1", True, False),
        (None, "1", False, True),  # then FMKIT_PROGRESS
        (None, "off", True, False),
        (None, None, True, True),  # then whether stderr is a terminal
        (None, None, False, False),
    ],
    ids=["true", "false", "env-on", "env-off", "terminal", "log"],
)
def test_progress_setting_resolves_explicit_then_env_then_terminal(monkeypatch, setting, env, tty, shown):
    if env is None:
        monkeypatch.delenv(console.PROGRESS_ENV, raising=False)
    else:
        monkeypatch.setenv(console.PROGRESS_ENV, env)
    monkeypatch.setattr("sys.stderr", Terminal() if tty else io.StringIO())
    assert console.progress_enabled(setting) is shown
    assert console.progress_bar(range(3), progress=setting).disable is not shown


def test_progress_bar_draws_on_the_stream_only_when_enabled():
    shown, hidden = Terminal(), Terminal()
    assert list(console.progress_bar(range(3), progress=True, file=shown, desc="work")) == [0, 1, 2]
    assert list(console.progress_bar(range(3), progress=False, file=hidden, desc="work")) == [0, 1, 2]
    assert "work" in shown.getvalue() and "3/3" in shown.getvalue() and hidden.getvalue() == ""


def test_warnings_once_shows_each_text_once_even_across_catch_warnings():
    shown = []
    original = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *args: shown.append(str(message))
        with console.warnings_once():
            for _ in range(3):
                warnings.warn("the same", UserWarning, stacklevel=1)
                with warnings.catch_warnings():  # what resets Python's own once-registry
                    warnings.simplefilter("ignore", RuntimeWarning)
            warnings.warn("another", UserWarning, stacklevel=1)
            warnings.warn("the same", RuntimeWarning, stacklevel=1)  # another category
        warnings.warn("the same", UserWarning, stacklevel=1)  # the hook is gone after the block
    assert shown == ["the same", "another", "the same", "the same"]
    assert warnings.showwarning is original


def test_pipeline_shows_lines_in_a_log_and_a_bar_with_the_expected_time_on_a_terminal(tmp_path):
    log = io.StringIO()
    assert _Console(False, log).cell_bar("[1/2] 01_x", 10, 20.0) is None
    assert _Console(False, log).cell_bar("[2/2] 02_y", 10, None) is None
    assert log.getvalue() == "[1/2] 01_x (expected 20 s)\n[2/2] 02_y\n"

    term = Terminal()
    bar = _Console(True, term).cell_bar("[1/2] 01_x", 10, 83.0)
    bar.total = 11  # as the engine sets it, with papermill's parameters cell
    bar.update(3)
    bar.set_description("Executing something")  # papermill's own title is ignored
    bar.close()
    bar.close()
    drawn = term.getvalue()
    assert "[1/2] 01_x:" in drawn and "3/11 cells" in drawn and "expected 01:23" in drawn
    assert "Executing" not in drawn and not bar._ticker.is_alive()


def test_pipeline_reads_the_time_each_notebook_took_from_its_log(tmp_path):
    assert _previous_seconds(tmp_path) == {}
    (tmp_path / "pipeline.log").write_text(
        "2026-01-01 10:00:00 01_x: started\n"
        "2026-01-01 10:00:20 01_x: finished in 20.5 s\n"
        "2026-01-01 11:00:00 02_y: FAILED in cell 3: E: e\n"
        "2026-01-01 12:00:20 01_x: finished in 18.0 s\n"
    )
    assert _previous_seconds(tmp_path) == {"01_x": 18.0}
    assert [duration(s) for s in (4.25, 42, 185, 3725)] == ["4.2 s", "42 s", "3 min 05 s", "1 h 02 min"]


def test_kernels_start_without_the_unencrypted_tcp_warning_and_write_their_own_output_to_a_file(tmp_path):
    config = kernel_config(output_file=tmp_path / "kernels.log")
    km = config.get("KernelManager", {})
    assert km.get("transport") == "ipc" or km.get("transport_encryption") == "auto"
    manager = kernel_manager_class()(config=config)
    assert manager.output_file == str(tmp_path / "kernels.log")

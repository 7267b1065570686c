"""The compile announcement and the terminal progress bar (graphc.progress)."""
import io

from graphc.progress import ANNOUNCE_FROM, CompileProgress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_the_line_and_a_bar_redrawn_in_place(monkeypatch):
    monkeypatch.delenv("GRAPHC_LOG", raising=False)
    out = Terminal()
    with CompileProgress(4, stream=out) as p:
        for name in ("gk_a", "gk_b", "gk_c", "gk_d"):
            p.advance(name)
    text = out.getvalue()
    assert text.startswith("graphc: compiling 4 kernels (first run; cached afterwards)\n")
    assert "\r[" + "#" * 6 + "." * 18 + "] 1/4 gk_a" in text
    assert "] 4/4 gk_d" in text and "#" * 24 in text
    assert text.endswith("\r\x1b[K")  # the bar is wiped at the end


def test_a_pipe_or_log_file_gets_one_line_and_no_bar(monkeypatch):
    monkeypatch.delenv("GRAPHC_LOG", raising=False)
    out = io.StringIO()
    with CompileProgress(5, stream=out) as p:
        p.advance("gk_a")
    assert out.getvalue() == "graphc: compiling 5 kernels (first run; cached afterwards)\n"


def test_quiet_or_few_kernels_print_nothing(monkeypatch):
    monkeypatch.setenv("GRAPHC_LOG", "quiet")
    out = Terminal()
    with CompileProgress(10, stream=out) as p:
        p.advance("gk_a")
    monkeypatch.delenv("GRAPHC_LOG")
    with CompileProgress(ANNOUNCE_FROM - 1, stream=out) as p:
        p.advance("gk_a")
    assert out.getvalue() == ""

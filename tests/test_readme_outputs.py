"""The README's output check (``tests/readme_outputs.py``): it finds each marked block, makes it again, and fails
when a documented output changes, machine-dependent figures aside."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import readme_outputs
from tests.readme_outputs import ReadmeError, differs, outputs

README = """# A project

Some prose.

<!-- output
command: printf 'searched 14 schedule(s) in 1.3 s\\nfound 2\\n'
machine: '\\d+\\.\\d+ s'
-->
```
searched 14 schedule(s) in 9.9 s
found 2
```

<!-- output
command: printf '| a | b |\\n|---|---|\\n| 1 | 2 |\\n'
-->
| a | b |
|---|---|
| 1 | 2 |

After the table.
"""


@pytest.fixture
def readme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "README.md"
    path.write_text(README)
    monkeypatch.setattr(readme_outputs, "README", path)
    return path


def test_blocks_and_tables_after_a_marker_are_found_with_their_lines() -> None:
    found = outputs(README)
    assert [(o.line, o.text) for o in found] == [
        (5, "searched 14 schedule(s) in 9.9 s\nfound 2\n"),
        (14, "| a | b |\n|---|---|\n| 1 | 2 |\n"),
    ]


def test_a_machine_figure_is_compared_for_shape_and_everything_else_exactly() -> None:
    machine = r"\d+\.\d+ s"
    assert differs("in 1.3 s, 14 runs\n", "in 27.0 s, 14 runs\n", machine) == []
    assert differs("in 1.3 s, 14 runs\n", "in 1.3 s, 15 runs\n", machine) != []
    assert differs("in 1.3 s, 14 runs\n", "in 1 minute, 14 runs\n", machine) != []  # not the same shape
    assert differs("in 1.3 s\n", "in 1.4 s\n", None) != []


def test_check_passes_on_the_documented_output_and_fails_when_it_changes(
    readme: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert readme_outputs.main(["--check"]) == 0
    readme.write_text(README.replace("found 2\n```", "found 3\n```"))
    assert readme_outputs.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "-found 3\n+found 2" in out and "2 output(s) checked, 1 differ" in out
    assert "found 3\n```" in readme.read_text()  # --check writes nothing


def test_without_check_the_blocks_are_written_as_made_now(readme: Path) -> None:
    readme.write_text(README.replace("found 2\n```", "found 3\n```").replace("| 1 | 2 |\n\n", "| 1 | 0 |\n\n"))
    assert readme_outputs.main([]) == 0
    assert readme.read_text() == README.replace("9.9 s", "1.3 s")


def test_a_command_that_fails_or_a_bad_marker_is_an_error_naming_the_line(
    readme: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme.write_text(README.replace("printf '| a", "exit 3; printf '| a"))
    assert readme_outputs.main(["--check"]) == 2
    assert 'README.md:14: "exit 3; printf' in capsys.readouterr().err
    with pytest.raises(ReadmeError, match=r"README.md:5: unknown key\(s\) machin;"):
        outputs(README.replace("machine:", "machin:"))


def test_lines_cut_the_output_and_prompt_shows_the_command(tmp_path: Path) -> None:
    spec = {"command": "printf 'noise\\nbegin\\nbody\\nend\\nmore\\n'", "lines": ["^begin", "^end"], "prompt": True}
    output = readme_outputs.Output(1, spec, 0, 0, "")
    assert readme_outputs.made(output, tmp_path, check=True) == f"$ {spec['command']}\nbegin\nbody\nend\n"


def test_a_marker_the_pattern_misses_is_an_error_not_a_skipped_block() -> None:
    with pytest.raises(ReadmeError, match=r"README.md:5: an output marker is"):
        outputs(README.replace("<!-- output\ncommand: printf 's", "<!-- output \ncommand: printf 's"))


def test_a_file_the_command_did_not_write_is_an_error(tmp_path: Path) -> None:
    output = readme_outputs.Output(3, {"command": "true", "file": "report.md"}, 0, 0, "")
    with pytest.raises(ReadmeError, match="README.md:3: 'true' wrote no file report.md"):
        readme_outputs.made(output, tmp_path, check=True)


def test_figures_are_masked_on_every_line() -> None:
    assert readme_outputs.masked("a 1.2 s\nb 3.4 s\n", r"\d+\.\d+ s$") == "a <machine>\nb <machine>\n"


def test_a_marker_named_in_prose_is_not_a_marker() -> None:
    assert len(outputs(README + "\nA comment (`<!-- output`, then the command) says how.\n")) == 2

"""The Procfile: process names and commands, with errors that name the line to fix."""

import pytest
from berth.builds.errors import BuildError, ProcfileError
from berth.builds.procfile import MAX_BYTES, parse_procfile, read_procfile
from berth.runtime.scheduler import command_args


def test_processes_are_read_in_order_with_release_comments_and_blank_lines():
    text = "# the app\n\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\r\nworker-2:  celery -A app worker \n  release: python manage.py migrate\n"
    assert parse_procfile(text) == {
        "web": "gunicorn app:app --bind 0.0.0.0:$PORT",
        "worker-2": "celery -A app worker",
        "release": "python manage.py migrate",
    }
    assert list(parse_procfile(text)) == ["web", "worker-2", "release"]


def test_an_empty_procfile_declares_no_process():
    assert parse_procfile("# nothing yet\n\n") == {}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("web: a\nweb: b\n", 2, "declared twice"),
        ("web: a\n\nworker:\n", 3, "empty command"),
        ("# c\nWeb: a\n", 2, "lowercase"),
        ("web_1: a\n", 1, "lowercase"),
        ("my web: a\n", 1, "lowercase"),
        (": a\n", 1, "lowercase"),
        ("web: a\njust a command\n", 2, "name: command"),
        ("x" * 31 + ": a\n", 1, "longer than 30"),
    ],
)
def test_a_bad_line_is_refused_with_its_number(text, line, words):
    with pytest.raises(ProcfileError, match=words) as caught:
        parse_procfile(text)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"Procfile line {line}: ")


def test_more_than_thirty_processes_are_refused_at_the_thirty_first():
    text = "# many\n" + "".join(f"p{i}: run {i}\n" for i in range(31))
    assert len(parse_procfile("".join(f"p{i}: run {i}\n" for i in range(30)))) == 30
    with pytest.raises(ProcfileError, match="more than 30 processes") as caught:
        parse_procfile(text)
    assert caught.value.line == 32


def test_a_file_over_64_kib_is_refused(tmp_path):
    text = "web: echo " + "x" * MAX_BYTES + "\n"
    with pytest.raises(ProcfileError, match="larger than 64 KiB"):
        parse_procfile(text)
    (tmp_path / "Procfile").write_text(text)
    with pytest.raises(ProcfileError, match="larger than 64 KiB"):
        read_procfile(tmp_path, default_web_command="x")


def test_a_procfile_error_is_a_build_error():
    assert issubclass(ProcfileError, BuildError)


def test_read_procfile_falls_back_to_the_buildpack_default_web_command(tmp_path):
    assert read_procfile(tmp_path, default_web_command="python app.py") == {"web": "python app.py"}


def test_without_procfile_or_default_command_no_process_is_declared(tmp_path):
    # the dockerfile buildpack: the release then runs the image's own CMD as web
    assert read_procfile(tmp_path, default_web_command="") == {}


def test_read_procfile_reads_the_source_tree(tmp_path):
    (tmp_path / "Procfile").write_text("web: ./serve\nclock: ./tick\n")
    assert read_procfile(tmp_path, default_web_command="python app.py") == {
        "web": "./serve",
        "clock": "./tick",
    }


def test_a_procfile_that_is_not_utf8_is_refused(tmp_path):
    (tmp_path / "Procfile").write_bytes(b"web: caf\xe9\n")
    with pytest.raises(ProcfileError, match="not UTF-8"):
        read_procfile(tmp_path, default_web_command="x")


def test_simple_commands_run_through_sh_with_exec_and_shell_lines_as_written():
    assert command_args("gunicorn app:app") == ["/bin/sh", "-c", "exec gunicorn app:app"]
    assert command_args("./migrate && ./serve") == ["/bin/sh", "-c", "./migrate && ./serve"]
    assert command_args("PYTHONPATH=src ./serve") == ["/bin/sh", "-c", "PYTHONPATH=src ./serve"]
    assert command_args("echo $(date)") == ["/bin/sh", "-c", "echo $(date)"]

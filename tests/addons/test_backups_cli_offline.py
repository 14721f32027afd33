"""The backup commands' parsing and refusals, before any server is asked (no credentials in this HOME)."""

import pytest

from tests.cli.conftest import assert_one_error_line


def test_a_restore_without_confirm_says_what_it_would_replace_and_how_to_proceed(berth):
    result = berth("pg:backups:restore", "db/b003", "copy", "-a", "shop")
    line = assert_one_error_line(result, contains="--confirm shop")
    assert "copy" in line and "db/b003" in line


def test_a_restore_with_the_wrong_confirm_is_refused(berth):
    assert_one_error_line(
        berth("redis:backups:restore", "cache/b001", "-a", "shop", "--confirm", "other"),
        contains="--confirm shop",
    )


@pytest.mark.parametrize(
    "words",
    [
        ["pg:backups:schedule", "db", "-a", "shop"],  # --at is required
        ["pg:backups:info", "-a", "shop"],  # ID is required
        ["pg:backups:schedule", "db", "--at", "02:00", "--keep", "many", "-a", "shop"],
    ],
)
def test_bad_command_lines_are_one_usage_line(berth, words):
    assert_one_error_line(berth(*words), code=2)


def test_help_of_a_backup_command_names_its_options(berth):
    result = berth("help", "pg:backups:download")
    assert result.returncode == 0
    assert "--output FILE" in result.stdout and "ADDON/b001" in result.stdout


def test_destroy_offers_no_backup(berth):
    result = berth("help", "addons:destroy")
    assert "--no-backup" in result.stdout

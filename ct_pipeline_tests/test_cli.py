"""The `ct-pipeline` command: help, and configuration checks with one-line errors."""

from __future__ import annotations

from click.testing import CliRunner

from ct_pipeline.cli import main


def test_help_lists_the_commands():
    result = CliRunner().invoke(main, ["--help"])

    assert result.exit_code == 0
    for command in ("sandbox", "config"):
        assert command in result.output


def test_config_check_accepts_the_packaged_example():
    result = CliRunner().invoke(main, ["config", "check"], env={"CT_SYNC_CONFIG": ""})

    assert result.exit_code == 0
    assert "valid" in result.output


def test_config_check_reports_a_bad_file_in_one_line_with_a_failing_status(tmp_path):
    path = tmp_path / "sync.yaml"
    path.write_text("clevertap: {batch_size: 5000}\n")

    result = CliRunner().invoke(main, ["config", "check", str(path)])

    assert result.exit_code != 0
    assert "clevertap.batch_size" in result.output
    assert "Traceback" not in result.output

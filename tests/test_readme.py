"""The README opens with exactly the two commands a fresh machine needs, and CI runs the second verbatim."""

from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_opens_with_two_commands_and_ci_runs_the_test_one():
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in first_block.splitlines() if line.strip()]
    assert len(commands) == 2
    install_and_run, install_and_test = commands
    assert "pip install" in install_and_run and "secbench run" in install_and_run
    assert "pip install" in install_and_test and "pytest" in install_and_test
    assert install_and_test in (ROOT / ".ci" / "run").read_text()

from tests.conftest import REPO


def test_ci_runs_the_test_command_readme_gives():
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command.endswith("python -m pytest")
    assert f"\n{ci_command}\n" in (REPO / "README.md").read_text()

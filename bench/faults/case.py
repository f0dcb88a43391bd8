"""A case of the suite, declared: its label, the files it makes, the command it runs and what is expected.

Most cases are one command: `files(s)` makes the inputs in the scratch folder and returns them by name,
`command(s, files)` builds the argv from the command table (s.c), `expect(ran)` judges the outcome. A case that
is a script of its own (a set-up run, a signal at the right moment, two commands at once) gives `script(s)`
instead. Either way the case returns one Result or a list of them (one run checking several kinds of file).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench.faults.harness import TIMEOUT, Result, judge_one_line, judge_refusal, run


@dataclass(frozen=True)
class Ran:
    """A command case's outcome, with what the expectation needs to judge it."""

    name: str
    where: str
    outcome: object
    files: dict
    suite: object

    def result(self, verdict, what):
        return Result(self.name, self.where, verdict, what, self.outcome.seconds)

    def text(self, key_or_text):
        """The path of the case's file `key_or_text`, or the text itself."""
        return str(self.files.get(key_or_text, key_or_text))


@dataclass(frozen=True)
class Case:
    label: str  # what --only matches
    name: object = ""  # the table's first column (or a function of the files, when it tells of them)
    where: str = ""  # its second column
    files: Callable = None  # (suite) -> {name: path or value}
    command: Callable = None  # (suite, files) -> argv after `python`
    expect: Callable = None  # (Ran) -> Result or [Result]
    timeout: int = TIMEOUT
    env: Callable = None  # (suite, files) -> environment variables to add
    memory_limit: int = None
    script: Callable = None  # (suite) -> Result or [Result], for a case that is more than one command

    def check(self, suite):
        if self.script is not None:
            return self.script(suite)
        files = self.files(suite) if self.files else {}
        env = self.env(suite, files) if self.env else None
        outcome = run(self.command(suite, files), env=env, timeout=self.timeout, memory_limit=self.memory_limit)
        name = self.name(files) if callable(self.name) else self.name
        return self.expect(Ran(name, self.where, outcome, files, suite))


def scripted(label, script):
    return Case(label, script=script)


# ---------------------------------------------------------------------------------------------------------------
# Expectations


def refused(names, *, one_line=False, unless=(), never=()):
    """Handled when the command stopped with one `error:` line naming `names` (a file of the case, or text);
    `one_line`: and stderr is that line alone. `unless` [(condition(files), verdict, what)]: checked once refused,
    a refusal that still wrote something is not handled; `never`: the same, checked whatever the command did."""

    def expect(ran):
        for condition, verdict, what in never:
            if condition(ran.files):
                return ran.result(verdict, what)
        judge = judge_one_line if one_line else judge_refusal
        result = judge(ran.name, ran.where, ran.outcome, names=ran.text(names))
        for condition, verdict, what in unless:
            if result.verdict == "handled" and condition(ran.files):
                return ran.result(verdict, what)
        return result

    return expect


def exists(key):
    """A condition of `unless`: the case's file `key` exists."""
    return lambda files: Path(files[key]).exists()

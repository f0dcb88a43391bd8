"""Running one command of the toolkit as a subprocess and judging what it did; the pool, the summary, the table.

    handled  it worked as documented (and its output was checked against a reference), or it stopped with one
             line that names the file and the problem (exit status non-zero, `error: ...`, no traceback)
    lost     a run ended without a usable latest checkpoint, or a command exited 0 with wrong output
    other    anything else (a traceback, a hang, an error that does not name the file): a bug to fix

Standard library only: tests/test_never_destroy.py imports `group_alive` from here.
"""

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120  # seconds for one command; a hang is a failure, not a wait


@dataclass
class Result:
    case: str
    where: str
    verdict: str  # handled | lost | other
    what: str  # what happened, for the table
    seconds: float = 0.0


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False


# ---------------------------------------------------------------------------------------------------------------
# Running


def environment(env=None):
    """The environment of every command: this checkout's code first, no progress bars."""
    return {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", **(env or {})}


def run(command, *, env=None, timeout=TIMEOUT, memory_limit=None):
    """`python *command` (strings or paths) in the repository, to its end. `memory_limit`: bytes of address space,
    for a case that would otherwise take the machine's memory."""
    import resource

    start = time.perf_counter()
    limit = (lambda: resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))) if memory_limit else None
    try:
        done = subprocess.run(
            [sys.executable, *map(str, command)],
            cwd=REPO,
            env=environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit,
        )
        return Outcome(done.returncode, done.stdout, done.stderr, time.perf_counter() - start)
    except subprocess.TimeoutExpired as expired:
        return Outcome(-1, str(expired.stdout or ""), str(expired.stderr or ""), time.perf_counter() - start, True)


def start(command, *, env=None, new_session=False):
    """`python *command` in the repository, started and left running (for a signal at the right moment)."""
    return subprocess.Popen(
        [sys.executable, *map(str, command)],
        cwd=REPO,
        env=environment(env),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=new_session,
    )


def finish(process, started, *, timeout=TIMEOUT):
    """The Outcome of a process started by `start`, once it ends."""
    stdout, stderr = process.communicate(timeout=timeout)
    return Outcome(process.returncode, stdout, stderr, time.perf_counter() - started)


def wait_for(process, condition, timeout=TIMEOUT):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None and not condition():
        time.sleep(0.02)


def group_alive(pgid):
    """Whether a process of the process group `pgid` is still alive."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------------
# Judging


def error_line(outcome):
    """The one `error: ...` line of a refused command, or None when it failed some other way."""
    if outcome.returncode == 0 or outcome.timed_out or "Traceback" in outcome.stderr:
        return None
    lines = [line for line in outcome.stderr.strip().splitlines() if line.startswith("error: ")]
    return lines[-1] if lines else None


def judge_refusal(case, where, outcome, *, names):
    """Handled when the command stopped with one `error:` line that contains `names` (the file or folder)."""
    line = error_line(outcome)
    if line is not None and names in line:
        return Result(case, where, "handled", f"refused: `{shorten(line, names)}`", outcome.seconds)
    if outcome.returncode == 0:
        return Result(case, where, "lost", "exited 0 on a file it should refuse", outcome.seconds)
    return Result(case, where, "other", describe_failure(outcome), outcome.seconds)


def judge_one_line(case, where, outcome, *, names):
    """judge_refusal, and stderr (progress bars aside) is that one line and nothing else."""
    result = judge_refusal(case, where, outcome, names=names)
    shown = [
        line
        for line in re.split(r"[\r\n]", outcome.stderr)
        if line.strip() and not re.search(r"\d+/\d+ \[[^]]*/s\]", line)
    ]
    if result.verdict == "handled" and len(shown) != 1:
        return Result(case, where, "other", f"{len(shown)} lines on stderr, not one: {shown[0][:120]}", outcome.seconds)
    return result


def describe_failure(outcome):
    if outcome.timed_out:
        return f"hung (killed after {TIMEOUT} s)"
    tail = (outcome.stderr.strip().splitlines() or ["(no output)"])[-1]
    kind = "traceback" if "Traceback" in outcome.stderr else f"exit {outcome.returncode}"
    return f"{kind}: {tail[:200]}"


SCRATCH = None  # the suite's temporary folder, shown as `...` in the table so that it reads the same every run


def shorten(line, names=None):
    """The error line without the temporary folders the files live in, cut to a table cell's length."""
    if names:
        line = line.replace(names.rsplit("/", 1)[0] + "/", ".../")
    if SCRATCH:
        line = line.replace(str(SCRATCH) + "/", ".../")
    return line[:160]


def read_text(path):
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def read_log(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


def usable_run(run_dir):
    """None when the run left final weights and a complete latest checkpoint; else what is missing."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.safetensors").is_file():
        return "no model.safetensors"
    complete = [p for p in (run_dir / "checkpoints").glob("step-*") if not p.name.endswith(".partial")]
    if not complete:
        return "no complete checkpoint"
    if not (max(complete) / "config.yaml").is_file():
        return f"{max(complete)} has no config.yaml"
    return None


def slug(text):
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40]


# ---------------------------------------------------------------------------------------------------------------
# The pool, the summary, the table


def run_all(cases, suite, *, jobs):
    """Every case's results, in the order of `cases` (each printed as it ends, in the order they end)."""
    results = [None] * len(cases)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(case.check, suite): i for i, case in enumerate(cases)}
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            try:
                found = future.result()
            except Exception as error:  # a bug in the suite, not in the toolkit: still reported
                found = Result(cases[i].label, "?", "other", f"fault script error: {error!r}")
            results[i] = found if isinstance(found, list) else [found]
            for result in results[i]:
                print(
                    f"[{result.verdict:>7}] {result.case} / {result.where}: {result.what} ({result.seconds:.1f} s)",
                    flush=True,
                )
    return [result for group in results for result in group]


def summary(results):
    """The last line: `N cases, N handled, 0 lost`."""
    handled = sum(r.verdict == "handled" for r in results)
    lost = sum(r.verdict == "lost" for r in results)
    return f"{len(results)} cases, {handled} handled, {lost} lost"


TABLE_BEGIN, TABLE_END = "<!-- bench/faults table: begin -->", "<!-- bench/faults table: end -->"


def check_table_page(path):
    """A page the table may go into: a new file, or one with the markers (checked before the run, not after)."""
    page = Path(path).read_text() if Path(path).exists() else None
    if page is not None and (TABLE_BEGIN not in page or TABLE_END not in page):
        raise SystemExit(
            f"error: {path}: exists without the markers {TABLE_BEGIN} ... {TABLE_END}; the table goes "
            "between them, or into a new file"
        )


def write_table(results, path):
    """A markdown table, one row per case, the rows of one kind of file together: between the markers of a page
    that has them (docs/reliability.md), or a new file. A page without the markers is not replaced."""
    order = {case: i for i, case in enumerate(dict.fromkeys(r.case for r in results))}
    lines = ["| case | where | what happens |", "|---|---|---|"]
    for r in sorted(results, key=lambda r: order[r.case]):
        lines.append(f"| {r.case} | {r.where} | {r.what.replace('|', '/')} |")
    table = "\n".join(lines) + "\n"
    path = Path(path)
    check_table_page(path)
    if path.exists():
        page = path.read_text()
        before, after = page.split(TABLE_BEGIN, 1)[0], page.split(TABLE_END, 1)[1]
        table = f"{before}{TABLE_BEGIN}\n{table}{TABLE_END}{after}"
    path.write_text(table)

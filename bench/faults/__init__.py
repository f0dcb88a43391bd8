"""Fault suite: bad input, interrupted runs and untrusted files against the toolkit's real commands.

    python -m bench.faults [--only SUBSTRING] [--jobs 2] [--keep DIR] [--table docs/reliability.md]

(from the repository's root). Every case builds its inputs in a temporary folder, runs one of the commands users
run (`python train/run.py`, `python train/evaluate.py`, `python export/upscale.py`, `python export/to_onnx.py`,
`python -m train.data prepare`, `accelerate launch`) as a subprocess, and judges the outcome:

    handled  it worked as documented (and its output was checked against a reference), or it stopped with one
             line that names the file and the problem (exit status non-zero, `error: ...`, no traceback)
    lost     a run ended without a usable latest checkpoint, or a command exited 0 with wrong output
    other    anything else (a traceback, a hang, an error that does not name the file): a bug to fix

Cases: every kind of bad or odd image file in training data, validation data, evaluate.py and upscale.py;
images smaller than the patch or the scale; empty and image-less folders; unicode paths; mismatched LR/HR pairs;
--skip-corrupt; SIGKILL mid-run and while a checkpoint is written, SIGTERM (each resumed with --resume latest and
compared with an uninterrupted run, exactly); a loss that turns NaN; and, with launch_configs/cpu_ddp.yaml, an
exception or a NaN in one of two processes; then the reliability rules of docs/reliability.md through every
command. Faults that need a hand inside the process (a kill between writing and renaming a checkpoint, a NaN
loss, an exception in rank 1, a writer held while it writes) run the command's own `main` from
bench/faults/injections.py, which patches one function: no test hooks in the toolkit.

The package, by job:

    makers.py      the files: odd and bad images, weights, ONNX models, recipes, damaged stores
    commands.py    the command table: the command line of every command the suite runs (the tiny options)
    injections.py  the faults inside a process: `python -m bench.faults.injections NAME COMMAND...`
    harness.py     running a command (time limit), judging it, the pool (--jobs), the summary, the table
    case.py        a case declared: label, files, command, expectation (or a script of its own)
    suite.py       the scratch folder, its good images and tiny model, what cases share
    cases/         the cases, one module per kind of fault, in the table's order

The last line is the summary: `N cases, N handled, 0 lost`. A tiny PAN (8 channels, one block) on 8x8 LR
patches keeps each training run to seconds; most of the time is Python importing torch, accelerate and datasets
(about 6 minutes for the suite on 2 busy cores).
"""

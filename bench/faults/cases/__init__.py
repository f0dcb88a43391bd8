"""Every case of the suite, in the order of the table: one module per kind of fault.

inputs       bad and odd image files, sizes, folders, paths, LR/HR pairs, --skip-corrupt
interrupted  kills, signals and a NaN loss mid-run, faults in one of two processes
rules        the reliability rules: never destroy, validate what is read, one line, suspect output
validate     structure, not totals: stores, manifests, init and metric weights, recipes, other programs' files
decode       decode only what is meant; images too large for memory
one_line     one line for what a user can cause; ONNX models that fail, loop or ask for gigabytes
destroy      every writer: a user's file, links, inputs as outputs, two writers, signals, a full disk
"""

from bench.faults.cases import decode, destroy, inputs, interrupted, one_line, rules, validate


def all_cases():
    return [
        *inputs.cases(),
        *interrupted.cases(),
        *rules.cases(),
        *validate.cases(),
        *decode.cases(),
        *one_line.cases(),
        *destroy.cases(),
    ]

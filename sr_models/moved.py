"""Old module paths kept for one release: `moved(__name__, new, ...)` turns the old module into a view of the
modules its names now live in, so the old path behaves as the old module did, not only for imports.

A plain re-export (`from new import name`) copies bindings: `from old import name` works, but assigning
`old.name = ...` (a user's monkeypatch of a download function, a test double) changes only the copy, and the
code, which now looks the name up in its new module, never sees it. Here reading a name of the old module reads
it from the first new module that binds it (private ones too: old code patched `_download`), and assigning or
deleting one does so in every new module that binds it: a function moved to one module and imported by name into
another is bound in both, as it was bound once in the old module. A name deleted that way and assigned again
returns to the modules it was deleted from (a monkeypatch's delattr and undo). The old module's own `__dict__`
also holds the names (tools such as pytest's monkeypatch read it), as they were at the last read or write through
the old path.
"""

import importlib
import os
import sys
import types
import warnings

_IMPORTLIB = os.path.dirname(importlib.__file__)


class _MovedModule(types.ModuleType):
    def __getattribute__(self, name):
        if not name.startswith("__"):
            state = object.__getattribute__(self, "__dict__")
            for target in state.get("_moved_to", ()):
                binding = vars(target)
                if name in binding:
                    state[name] = binding[name]  # keep the snapshot in __dict__ current
                    return binding[name]
        return super().__getattribute__(name)

    def __setattr__(self, name, value):
        for target in _owners(self, name) + vars(self)["_moved_deleted"].pop(name, []):
            setattr(target, name, value)
        super().__setattr__(name, value)

    def __delattr__(self, name):
        owners = _owners(self, name)
        for target in owners:
            delattr(target, name)
        if owners:
            vars(self)["_moved_deleted"][name] = owners
        if name in vars(self):
            super().__delattr__(name)
        elif not owners:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


def _owners(module, name):
    if name.startswith("__"):  # the module's own __all__, __doc__, ...
        return []
    return [target for target in vars(module)["_moved_to"] if name in vars(target)]


def moved(old_name, *new_names):
    """Make the module `old_name` (call with `__name__`) a view of the modules `new_names` (the first that binds
    a name gives its value); the old module keeps its own `__all__` (what `from old import *` gave). Importing the
    old path warns (a DeprecationWarning, attributed to the code that imports it)."""
    module = sys.modules[old_name]
    targets = [importlib.import_module(name) for name in new_names]
    for target in reversed(targets):
        module.__dict__.update((name, value) for name, value in vars(target).items() if not name.startswith("__"))
    module.__dict__.update(_moved_to=targets, _moved_deleted={})
    module.__class__ = _MovedModule
    _warn_importer(f"{old_name} moved to {', '.join(new_names)}; the old path goes in the next release")


def _warn_importer(message):
    """A DeprecationWarning attributed to the first frame outside the import machinery (`import x`, `from x import
    y` and importlib.import_module alike), so Python's default filter shows it when that code is __main__."""
    frame = sys._getframe(3)  # 0: here, 1: moved(), 2: the old module's body, 3: whoever ran it
    while frame and (
        frame.f_code.co_filename.startswith("<frozen importlib") or frame.f_code.co_filename.startswith(_IMPORTLIB)
    ):
        frame = frame.f_back
    if frame is None:
        return warnings.warn(message, DeprecationWarning, stacklevel=2)
    warnings.warn_explicit(
        message,
        DeprecationWarning,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=frame.f_globals.get("__name__", "<unknown>"),
        registry=frame.f_globals.setdefault("__warningregistry__", {}),
    )

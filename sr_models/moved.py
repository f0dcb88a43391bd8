"""Old module paths kept for one release: `moved(__name__, new, ...)` turns the old module into a view of the
modules its names now live in, so the old path behaves as the old module did, not only for imports.

A plain re-export (`from new import name`) copies bindings: `from old import name` works, but assigning
`old.name = ...` (a user's monkeypatch of a download function, a test double) changes only the copy, and the
code, which now looks the name up in its new module, never sees it. Here the old module holds every name of the
new modules (private ones too: old code patched `_download`), and assigning or deleting one does so in every new
module that binds it as well: a function moved to one module and imported by name into another is bound in
both, as it was bound once in the old module.
"""

import importlib
import sys
import types
import warnings


class _MovedModule(types.ModuleType):
    def __setattr__(self, name, value):
        for target in self._owners(name):
            setattr(target, name, value)
        super().__setattr__(name, value)

    def __delattr__(self, name):
        for target in self._owners(name):
            delattr(target, name)
        super().__delattr__(name)

    def _owners(self, name):
        if name.startswith("__"):  # the module's own __all__, __doc__, ...
            return []
        return [target for target in vars(self)["_moved_to"] if name in vars(target)]


def moved(old_name, *new_names):
    """Make the module `old_name` (call with `__name__`) a view of the modules `new_names` (the first that binds
    a name gives its value); the old module keeps its own `__all__` (what `from old import *` gave). Importing the
    old path warns (a DeprecationWarning, attributed to the code that imports it)."""
    module = sys.modules[old_name]
    targets = [importlib.import_module(name) for name in new_names]
    for target in reversed(targets):
        module.__dict__.update((name, value) for name, value in vars(target).items() if not name.startswith("__"))
    module.__dict__["_moved_to"] = targets
    module.__class__ = _MovedModule
    warnings.warn(
        f"{old_name} moved to {', '.join(new_names)}; the old path goes in the next release",
        DeprecationWarning,
        stacklevel=3,
    )

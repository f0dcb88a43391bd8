"""The trainer's named choices (losses, optimizers, learning-rate schedules): each a plain dict filled by a decorator.

    @LOSSES.register("l1", "mean absolute error")
    def l1(sr, hr): ...

The names are the config's valid values (train/config.py checks against them) and `--help` lists them with their
descriptions; a new choice is one entry, not an edit of the loop or of the config.
"""


class Registry(dict):
    """name -> entry, in registration order; `descriptions` holds each one's one-line description."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind  # "loss", "optimizer", ...: for messages
        self.descriptions = {}

    def register(self, name, description):
        def add(entry):
            assert name not in self, f"{self.kind} {name!r} is registered twice"
            self[name] = entry
            self.descriptions[name] = description
            return entry

        return add

    def names(self):
        """'l1 | mse | charbonnier': the valid names as an option's help lists them."""
        return " | ".join(self)

    def listing(self):
        """One line per entry, `name  description`, for the end of --help."""
        width = max(map(len, self), default=0)
        return [f"  {name:<{width}}  {self.descriptions.get(name, '')}" for name in self]

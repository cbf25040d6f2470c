"""Errors that lswag reports to the user as one line (the CLI exits with code 2 on them), and its warnings."""


class LswagError(ValueError):
    """A problem with the user's input: a malformed architecture, an unknown name, a missing file.

    The message is one line that names the problem and, where there is a closed set, the valid
    choices.
    """


def unknown_choice(kind: str, value: str, choices) -> LswagError:
    """The error for a name that is not one of ``choices``, listing the valid ones."""
    return LswagError(f"unknown {kind} {value!r}; valid choices: {', '.join(sorted(choices))}")


class LswagWarning(UserWarning):
    """Something the user should know before a long run (e.g. its cost); the CLI shows it as one line."""

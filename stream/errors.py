"""The one exception type that the CLI turns into a single line for people."""


class UserError(Exception):
    """Something the user gave or has is wrong; the message says what and what to do.

    run.py prints ``error: <message>`` and exits with ``exit_code`` (no traceback).
    """

    exit_code = 2

"""The one exception type that the CLI turns into a single line for people, and
``number_as_text``, the hint for a number that YAML read as text."""
import math


class UserError(Exception):
    """Something the user gave or has is wrong; the message says what and what to do.

    run.py prints ``error: <message>`` and exits with ``exit_code`` (no traceback).
    """

    exit_code = 2


def number_as_text(v, whole: bool = False) -> str:
    """For a string that reads as a number (such as ``1e3`` or ``1.0e9``, which YAML 1.1 reads
    as text: its floats need a dot and a signed exponent), " (YAML reads 1e3 as text, not a
    number: write 1.0e+3 or 1000)"; else "" (also for text quoted on purpose, '12').
    ``whole``: where an integer is wanted, only the integer form is offered when there is one."""
    import yaml
    if not isinstance(v, str):
        return ""
    try:
        if not isinstance(yaml.safe_load(v), str):
            return ""           # text that was quoted on purpose: YAML reads it as a number
        number = float(v.strip())
    except (ValueError, yaml.YAMLError):
        return ""
    if not math.isfinite(number):
        return ""
    mantissa, _, exponent = f"{number:e}".partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    mantissa += "" if "." in mantissa else ".0"
    sign = "-" if exponent.startswith("-") else "+"
    ways = [f"{mantissa}e{sign}{int(exponent[1:])}"]
    if number.is_integer() and abs(number) < 1e18:
        ways = [str(int(number))] if whole else ways + [str(int(number))]
    return f" (YAML reads {v} as text, not a number: write {' or '.join(ways)})"

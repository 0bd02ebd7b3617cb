"""Boolean options that arrive from a bundle's command line.

``python -m monai.bundle run --overwrite false`` hands the config the *string* ``"false"`` (fire reads only
Python literals, ``False``), which is truthy; every boolean option a function takes from a config goes through
``as_flag`` so that both spellings mean what they say and anything else fails naming the option.
"""

from __future__ import annotations

TRUE = ("true", "1", "yes")
FALSE = ("false", "0", "no")


def as_flag(value: object, name: str) -> bool:
    """``value`` as a bool: a bool, 0 / 1, or one of ``true/false/1/0/yes/no`` in any case.

    Args:
        value: the option's value.
        name: the option's config id, named in the error.

    Raises:
        ValueError: ``value`` is none of the above.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    raise ValueError(f"option '{name}' must be True or False, got {value!r}.")

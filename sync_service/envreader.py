"""environs over a given mapping: reads and validates declared variables into values, or a ConfigError.

The declarations themselves live in :mod:`sync_service.config` as plain data (a :class:`Rule` each), so
that importing the settings costs no environs or marshmallow; this module turns a rule into environs'
parser, marshmallow validators and messages, and is imported only when settings are read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import marshmallow as ma
from environs import Env, EnvNotSetError, EnvValidationError
from marshmallow.validate import Length, Range, Regexp

from sync_service.errors import ConfigError

REQUIRED: Any = Ellipsis
"""The default of a variable that has none (environs' own marker)."""


class Rule(Protocol):
    """How one variable is parsed and validated (``sync_service.config.Variable`` is one)."""

    @property
    def name(self) -> str:
        """The environment variable."""

    @property
    def parser(self) -> str:
        """environs' ``Env`` method: ``str``, ``int`` or ``float``."""

    @property
    def check(self) -> Callable[[str], Any] | None:
        """For a string: returns it cleaned, or raises ``ValueError`` with a message (never the value)."""

    @property
    def low(self) -> float | None:
        """For a number: the smallest allowed."""

    @property
    def high(self) -> float | None:
        """For a number: the largest allowed."""

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """For a string: what it must match."""

    @property
    def pattern_error(self) -> str:
        """The message when it does not (``{input!r}`` quotes the value: only for non-secrets)."""

    @property
    def min_length(self) -> int | None:
        """For a string: its fewest characters."""

    @property
    def blank_is_value(self) -> bool:
        """Whether a blank value is a value (else it counts as unset and the default applies)."""


def message(messages: Any) -> str:
    """marshmallow's messages (a string, a list, or a mapping of lists) as one line."""
    if isinstance(messages, Mapping):
        return "; ".join(message(m) for m in messages.values())
    if isinstance(messages, list | tuple):
        return "; ".join(message(m) for m in messages)
    return str(messages)


class _Checked(ma.fields.Str):
    """A string field cleaned by ``check``, whose ``ValueError`` becomes a validation error."""

    def __init__(self, *, check: Callable[[str], Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._check = check

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        try:
            return self._check(super()._deserialize(value, attr, data, **kwargs))
        except ValueError as error:
            raise ma.ValidationError(str(error)) from None


class MappingEnv(Env):
    """environs' reader over a given mapping instead of ``os.environ``.

    ``Env`` always looks in ``os.environ`` first (``read_env`` only adds ``.env`` files beneath it), and
    the settings must be read from exactly the mapping given (tests pass dicts). ``_get_value`` is the
    hook environs' own ``FileAwareEnv`` overrides. Values are stripped; a blank one counts as unset,
    except in the variables of ``blank_is_value``.
    """

    def __init__(self, source: Mapping[str, str], blank_is_value: Iterable[str] = ()) -> None:
        super().__init__(eager=True)
        self._source = source
        self._blank_is_value = frozenset(blank_is_value)
        self.add_parser_from_field("checked", _Checked)

    def _get_value(self, env_key: str, default: Any) -> Any:
        raw = self._source.get(env_key)
        if raw is None:
            return default
        value = raw.strip()
        return value if value or env_key in self._blank_is_value else default


def _options(rule: Rule) -> tuple[str, dict[str, Any]]:
    """environs' method name and its keyword arguments for ``rule``."""
    validators: list[Callable[[Any], Any]] = []
    options: dict[str, Any] = {"validate": validators}
    if rule.parser in ("int", "float"):
        low, high = rule.low, rule.high
        bounds = f"at least {low}" if high is None else f"from {low} to {high}"
        if low is not None or high is not None:
            validators.append(Range(min=low, max=high, error=f"must be {bounds}, got {{input}}"))
        whole = "whole " if rule.parser == "int" else ""
        options["error_messages"] = {"invalid": f"must be a {whole}number, got {{input!r}}"}
        if rule.parser == "float":
            options["allow_nan"] = True  # float() took "nan" and "inf" before environs: kept as they were
        return rule.parser, options
    if rule.pattern is not None:
        validators.append(Regexp(rule.pattern, error=rule.pattern_error))
    if rule.min_length is not None:
        validators.append(Length(min=rule.min_length, error="must be at least {min} characters"))
    if rule.check is not None:
        options["check"] = rule.check
        return "checked", options
    return rule.parser, options


def read(source: Mapping[str, str], wanted: Iterable[tuple[Rule, Any]]) -> dict[str, Any]:
    """The value of each ``(rule, default)`` in ``source``, by variable name; ``default`` may be
    :data:`REQUIRED`. Raise :class:`ConfigError` naming the first variable that is missing or wrong (its
    message lists the others too)."""
    wanted = list(wanted)
    reader = MappingEnv(source, (rule.name for rule, _ in wanted if rule.blank_is_value))
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for rule, default in wanted:
        method, options = _options(rule)
        try:
            values[rule.name] = getattr(reader, method)(rule.name, default, **options)
        except EnvNotSetError:
            problems.append((rule.name, "is required"))
        except EnvValidationError as error:
            problems.append((rule.name, message(error.error_messages)))
    if problems:
        # Every wrong setting at once, so that a deployment is fixed in one round, not one per setting.
        (first, first_message), *rest = problems
        raise ConfigError(first, first_message + "".join(f"; {name}: {text}" for name, text in rest))
    return values

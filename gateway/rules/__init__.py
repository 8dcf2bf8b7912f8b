"""Entrapment and fault detection: declarative rules (`alert_rules/*.yaml`) over frames.

Pure: the caller passes every frame and the time; nothing here does I/O or reads a clock.
"""

from gateway.rules.engine import Alert, RuleEngine
from gateway.rules.spec import DEFAULT_RULES_DIR, RuleError, RuleSet, load_rules

__all__ = ["DEFAULT_RULES_DIR", "Alert", "RuleEngine", "RuleError", "RuleSet", "load_rules"]

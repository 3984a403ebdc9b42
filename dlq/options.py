"""The `[dlq]` section's meaning: which topics count as dead-letter topics and how deep to probe.

Kept apart from `dlq.discovery` (which reads topics through librdkafka and
decodes envelopes with `tracing.frames`, pulling in opentelemetry) because
every lagdeck command parses every settings section at start-up
(`console.settings`): `lagdeck lag` must not import the DLQ reader for that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from collectors.config import Settings
from collectors.errors import ConfigError

DEFAULT_PATTERNS = ("*-dlt", "*.DLT", "*.dlq", "*-dlq", "dlq-*", "*.deadletter")


@dataclass(frozen=True)
class DiscoveryOptions:
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    content_scan: bool = True
    probe: int = 3
    sample: int = 500
    top: int = 5

    @classmethod
    def from_settings(cls, settings: Settings | None) -> DiscoveryOptions:
        section: Mapping = settings.section("dlq") if settings else {}
        try:
            patterns = tuple(str(p) for p in section.get("patterns", DEFAULT_PATTERNS))
            patterns += tuple(str(p) for p in section.get("extra_patterns", ()))
            return cls(patterns=patterns,
                       content_scan=bool(section.get("content_scan", True)),
                       probe=int(section.get("probe", 3)),
                       sample=int(section.get("sample", 500)))
        except (TypeError, ValueError) as exc:
            where = settings.path if settings else "config"
            raise ConfigError(f"{where}: invalid [dlq] section: {exc}") from None

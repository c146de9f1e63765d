"""Operations: health and readiness probes, metrics, logging context, Sentry."""

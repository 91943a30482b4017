"""Operations: health, metrics, logs."""

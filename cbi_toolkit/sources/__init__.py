"""Data sources. Each returns a tidy frame: DatetimeIndex named ``date``, one
float column per series, sorted, no duplicate dates."""

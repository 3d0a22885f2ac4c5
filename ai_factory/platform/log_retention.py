"""CloudWatch Logs retention: the periods it accepts, as days and as ``logs.RetentionDays``.

``RetentionDays`` members carry only names, so constructs that accept a retention as days (or need
the days back, e.g. for an S3 expiry that matches the log groups) use this table.
"""

from __future__ import annotations

from aws_cdk import aws_logs as logs

RETENTION_DAYS: dict[int, logs.RetentionDays] = {
    days: logs.RetentionDays[name]
    for days, name in (
        *((1, "ONE_DAY"), (3, "THREE_DAYS"), (5, "FIVE_DAYS"), (7, "ONE_WEEK"), (14, "TWO_WEEKS")),
        *((30, "ONE_MONTH"), (60, "TWO_MONTHS"), (90, "THREE_MONTHS"), (120, "FOUR_MONTHS")),
        *((150, "FIVE_MONTHS"), (180, "SIX_MONTHS"), (365, "ONE_YEAR"), (400, "THIRTEEN_MONTHS")),
        *((545, "EIGHTEEN_MONTHS"), (731, "TWO_YEARS"), (1096, "THREE_YEARS"), (1827, "FIVE_YEARS")),
        *((2192, "SIX_YEARS"), (2557, "SEVEN_YEARS"), (2922, "EIGHT_YEARS"), (3288, "NINE_YEARS")),
        (3653, "TEN_YEARS"),
    )
}
"""Every finite retention CloudWatch Logs accepts, by days."""


def finite_retention(value: logs.RetentionDays | int) -> logs.RetentionDays | None:
    """``value`` as a finite ``RetentionDays`` (a member or a number of days), or ``None`` if it is
    ``INFINITE`` or not a period CloudWatch Logs accepts."""
    if isinstance(value, logs.RetentionDays):
        return value if value != logs.RetentionDays.INFINITE else None
    if isinstance(value, int) and not isinstance(value, bool):
        return RETENTION_DAYS.get(value)
    return None


def retention_in_days(retention: logs.RetentionDays) -> int:
    """The number of days of a finite ``retention``."""
    return next(days for days, member in RETENTION_DAYS.items() if member == retention)

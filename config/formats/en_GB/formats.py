"""Times as every page shows them (the site runs in UTC): to the second, year first.

The admin formats dates with the active language's formats, not the settings', so
the bank's format is given here for the language the site uses (LANGUAGE_CODE).
"""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
TIME_FORMAT = "H:i:s"

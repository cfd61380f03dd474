"""Rate tables: what a utility charges, per rate code, as versioned YAML validated on load.

The modules, pure core first:

- :mod:`~hub.rates.model` — the plain frozen data: a table, its versions by
  effective date, their components (fixed, tiered, TOU, demand, minimum,
  percentage, wastewater) and special rate options;
- :mod:`~hub.rates.schema` — one YAML file per rate code, checked with errors
  naming the file, key path and why (the file format is documented there);
- :mod:`~hub.rates.book` — a directory of rate files, loaded together.

Bills are computed from these by :func:`hub.billing.compute_bill`.

Example::

    book = RateBook.load(default_rate_dir())
    bill = compute_bill(determinants, book.rate("RES-W1"))
"""

from hub.rates.book import RateBook, RateBookError, UnknownRateError, default_rate_dir
from hub.rates.model import NoVersionError, RateTable, RateVersion, Rounding
from hub.rates.schema import RateError, load_rate, parse_rate

__all__ = ["NoVersionError", "RateBook", "RateBookError", "RateError", "RateTable",
           "RateVersion", "Rounding", "UnknownRateError", "default_rate_dir", "load_rate",
           "parse_rate"]

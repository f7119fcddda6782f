"""Interaction logs in Parquet: one row per item shown to a user.

A log is a **directory** that Parquet readers treat as one dataset::

    my_log/
        part-00000.parquet    # one row group per part, written atomically
        part-00001.parquet
        _catalog.parquet      # the item catalog (optional)
        _metadata.json        # schema version, policy, row counts

Readers skip names that start with ``_`` or ``.`` (the Hadoop convention that pyarrow,
pandas, Spark and Ray follow), so ``pandas.read_parquet("my_log")`` and
``pyarrow.dataset.dataset("my_log")`` read exactly the interactions. Polars does not
skip them by default; give it the parts, ``polars.read_parquet("my_log/part-*.parquet")``
(the glob works in DuckDB and Spark too), or ``polars.scan_parquet("my_log",
hidden_file_prefix=["_", "."])``. `read_log` also checks the schema and values of
every part.

The package's modules:

=============  ===========================================================================
module         holds
=============  ===========================================================================
schema         `LOG_SCHEMA`, `PRIVILEGED_LOG_SCHEMA`, `PRIVILEGED_COLUMNS`, the file names,
               `LogSchemaError`, `catalog_table` (the columns, described there)
writer         `ParquetLogWriter` (atomic part files)
recording      `LogInteractions` (a vector-env wrapper that logs every real step)
reader         `read_log`, `read_catalog`, `read_public_catalog`, `read_user_first_days`, `read_log_metadata`,
               `log_part_files`, `log_fingerprint`
mapping        `ColumnMapping`, `ItemTableMapping` (no pyarrow: light to import)
presets        `PRESETS` (KuaiRec, MovieLens 25M / 1M / 100k), `resolve_mapping` (light)
importing      `import_logs`: your own CSV or Parquet logs as a log directory
formats        reading the CSV and Parquet source files of an import, `LogImportError`
text_files     delimited text: any delimiter (``::`` too), no header, encodings
item_tables    item tables beside the interactions: features and texts of the catalog
sessions       `sessionize`: sessions, days and return gaps from timestamps
report         `ImportReport` and the reasons an import drops a row
validation     the array checks shared by the writer, the wrapper and the readers
=============  ===========================================================================

Everything public is importable from here (``from loe_gym.logs import read_log,
import_logs, ColumnMapping``). Only the mapping is imported with the package; the other
modules load on first use of one of their names, so that ``import loe_gym.logs.mapping``
stays free of pyarrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loe_gym.lazy import lazy_exports
from loe_gym.logs.mapping import (
    DURATION_UNITS,
    TIMESTAMP_UNITS,
    ColumnMapping,
    ItemTableMapping,
)
from loe_gym.logs.presets import PRESETS, resolve_mapping

if TYPE_CHECKING:
    from loe_gym.logs.formats import LogImportError
    from loe_gym.logs.importing import (
        IMPORT_FILES,
        ITEM_IDS_FILE,
        REPORT_FILE,
        USER_IDS_FILE,
        import_logs,
    )
    from loe_gym.logs.reader import (
        log_fingerprint,
        log_part_files,
        read_catalog,
        read_log,
        read_log_metadata,
        read_public_catalog,
        read_user_first_days,
    )
    from loe_gym.logs.recording import LogInteractions
    from loe_gym.logs.report import DUPLICATE_CONFLICT, DUPLICATE_EXACT, INCOMPLETE, ImportReport
    from loe_gym.logs.schema import (
        CATALOG_FILE,
        LOG_SCHEMA,
        LOG_SCHEMA_VERSION,
        METADATA_FILE,
        PRIVILEGED_COLUMNS,
        PRIVILEGED_LOG_SCHEMA,
        LogSchemaError,
        catalog_table,
    )
    from loe_gym.logs.sessions import sessionize
    from loe_gym.logs.writer import ParquetLogWriter

# Public name -> the module (of this package) that defines it, imported on first use.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        (
            "CATALOG_FILE",
            "LOG_SCHEMA",
            "LOG_SCHEMA_VERSION",
            "METADATA_FILE",
            "PRIVILEGED_COLUMNS",
            "PRIVILEGED_LOG_SCHEMA",
            "LogSchemaError",
            "catalog_table",
        ),
        "schema",
    ),
    "ParquetLogWriter": "writer",
    "LogInteractions": "recording",
    **dict.fromkeys(
        (
            "log_fingerprint",
            "log_part_files",
            "read_catalog",
            "read_log",
            "read_log_metadata",
            "read_public_catalog",
            "read_user_first_days",
        ),
        "reader",
    ),
    **dict.fromkeys(
        ("IMPORT_FILES", "ITEM_IDS_FILE", "REPORT_FILE", "USER_IDS_FILE", "import_logs"),
        "importing",
    ),
    "LogImportError": "formats",
    "sessionize": "sessions",
    **dict.fromkeys(
        ("DUPLICATE_CONFLICT", "DUPLICATE_EXACT", "INCOMPLETE", "ImportReport"), "report"
    ),
}

__all__ = [
    "CATALOG_FILE",
    "DUPLICATE_CONFLICT",
    "DUPLICATE_EXACT",
    "DURATION_UNITS",
    "IMPORT_FILES",
    "INCOMPLETE",
    "ITEM_IDS_FILE",
    "LOG_SCHEMA",
    "LOG_SCHEMA_VERSION",
    "METADATA_FILE",
    "PRESETS",
    "PRIVILEGED_COLUMNS",
    "PRIVILEGED_LOG_SCHEMA",
    "REPORT_FILE",
    "TIMESTAMP_UNITS",
    "USER_IDS_FILE",
    "ColumnMapping",
    "ImportReport",
    "ItemTableMapping",
    "LogImportError",
    "LogInteractions",
    "LogSchemaError",
    "ParquetLogWriter",
    "catalog_table",
    "import_logs",
    "log_fingerprint",
    "log_part_files",
    "read_catalog",
    "read_log",
    "read_log_metadata",
    "read_public_catalog",
    "read_user_first_days",
    "resolve_mapping",
    "sessionize",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)

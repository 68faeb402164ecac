"""Importers that turn files practitioners already have into a circtune Dataset.

- ``read_bag3``: BAG3 ``ss_params.hdf5`` files or folders of them.
- ``read_lookup_table``: gm/ID lookup tables, MATLAB ``.mat`` (versions 5
  to 7.3) and mosplot ``.npz`` (a pickled dict, loaded by a restricted
  unpickler).
- ``resample``: put tables onto a chosen (vbs, vgs, vds) grid.
- ``add_convert_arguments`` and ``run_convert``: the ``convert`` command.
"""

from circtune.data.importers.bag3 import (
    BAG3_FILE_NAME,
    SIDECAR_NAMES,
    MetadataOverrides,
    find_bag3_files,
    read_bag3,
    read_bag3_file,
)
from circtune.data.importers.convert_cli import (
    add_convert_arguments,
    expand_sources,
    load_sources,
    run_convert,
    source_format,
)
from circtune.data.importers.lookup import lookup_format, read_lookup_table, read_mat_table, read_npz_table
from circtune.data.importers.resample import (
    DEFAULT_AXIS_POINTS,
    AxisGrid,
    GridSpec,
    concatenate_tables,
    parse_axis_range,
    parse_grid,
    resample,
)
from circtune.data.importers.safe_pickle import ALLOWED_GLOBALS, RestrictedUnpickler, load_pickle

__all__ = [
    "ALLOWED_GLOBALS",
    "BAG3_FILE_NAME",
    "DEFAULT_AXIS_POINTS",
    "SIDECAR_NAMES",
    "AxisGrid",
    "GridSpec",
    "MetadataOverrides",
    "RestrictedUnpickler",
    "add_convert_arguments",
    "concatenate_tables",
    "expand_sources",
    "find_bag3_files",
    "load_pickle",
    "load_sources",
    "lookup_format",
    "parse_axis_range",
    "parse_grid",
    "read_bag3",
    "read_bag3_file",
    "read_lookup_table",
    "read_mat_table",
    "read_npz_table",
    "resample",
    "run_convert",
    "source_format",
]

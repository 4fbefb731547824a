"""The server-owned ``sys/`` fields of a run: one registry read by the run table, the query engine,
the path rules and the attribute API, so they agree on each field's type, column and abilities.

``type`` is what the API reports and the query language compares (``sys/id`` is the human id
``VIS-12``, compared by run number); ``column`` is the Run field it is read from and sorted by
(None: computed, or stored as an attribute like ``sys/tags``); ``title`` heads its table column.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class SysField:
    path: str
    type: str
    column: str | None
    title: str
    sortable: bool = True
    filterable: bool = True  # the query language filters it as a run column (sys/tags is an attribute)
    writable: bool = False  # clients may set it in a batch


SYS_FIELDS = (
    SysField("sys/id", "string", "number", "Id"),
    SysField("sys/name", "string", "name", "Name", writable=True),
    SysField("sys/description", "string", "description", "Description", writable=True),
    SysField("sys/owner", "string", "owner__username", "Owner"),
    SysField("sys/state", "string", "state", "State"),
    SysField("sys/failed", "bool", None, "Failed"),
    SysField("sys/creation_time", "datetime", "created_at", "Created"),
    SysField("sys/modification_time", "datetime", "modified_at", "Modified"),
    SysField("sys/ping_time", "datetime", "ping_at", "Last ping"),
    SysField("sys/running_time", "float", None, "Running time"),
    SysField("sys/custom_run_id", "string", "custom_run_id", "Custom run id"),
    SysField("sys/project", "string", None, "Project", sortable=False, filterable=False),
    SysField("sys/tags", "string_set", None, "Tags", sortable=False, filterable=False, writable=True),
)
BY_PATH = {f.path: f for f in SYS_FIELDS}

# Written by clients as attributes although under sys/ (besides the writable fields above).
CLIENT_SYS_PATHS = {"sys/failure", "sys/hostname", "sys/group_tags"}
WRITABLE_PATHS = {f.path for f in SYS_FIELDS if f.writable} | CLIENT_SYS_PATHS

# The query language's sys fields: path -> type.
QUERY_TYPES = {f.path: f.type for f in SYS_FIELDS if f.filterable}
# Query fields that are plain Run columns (sys/id is compared by number, sys/owner through its user).
RUN_COLUMNS = {
    f.path: f.column for f in SYS_FIELDS if f.filterable and f.column and f.path not in ("sys/id", "sys/owner")
}
# Fields the run table draws from the run row: path -> (title, ORM field to sort on or None).
TABLE_COLUMNS = {
    f.path: (f.title, (f.column or f.path) if f.sortable else None)
    for f in SYS_FIELDS
    if f.path not in ("sys/failed", "sys/custom_run_id", "sys/project")
}

DEFAULT_COLUMNS = ["sys/id", "sys/name", "sys/owner", "sys/state", "sys/creation_time", "sys/running_time", "sys/tags"]
MAX_COLUMNS = 200  # columns one table or query may ask for

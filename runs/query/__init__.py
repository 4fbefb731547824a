"""The query engine: a typed filter language over run fields, sorting, grouping, columns, paging."""

from .budget import QueryDatabaseError, QueryTimeout, query_budget
from .compiler import QueryError
from .engine import DEFAULT_COLUMNS, RunQuery, parse_list
from .fields import project_fields
from .parser import QuerySyntaxError, parse
from .suggest import suggest

__all__ = [
    "DEFAULT_COLUMNS",
    "QueryDatabaseError",
    "QueryError",
    "QueryTimeout",
    "QuerySyntaxError",
    "RunQuery",
    "parse",
    "parse_list",
    "project_fields",
    "query_budget",
    "suggest",
]

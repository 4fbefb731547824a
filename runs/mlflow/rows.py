"""Model instances from rows of hand-written SQL, for the MLflow API's per-request look-ups.

The stock client makes a run with two requests (``runs/create``, ``runs/log-batch``), each of which
looks up its experiment or run with its project and workspace, and the batch reads the run's fields:
building those querysets costs the ORM more CPU than the database spends answering them (~3 ms for a
run with its project, workspace and owner, against ~1 ms for the same SQL). Here the column lists
and each column's converters (the ones the ORM would apply) are worked out once per model and
database; a row becomes an instance through ``Model.from_db``, as the ORM makes it.
"""

from functools import cache

from django.db import connections, router


@cache
def _columns(model, alias: str, db: str) -> tuple[str, list]:
    """``(SQL select list of ``model``'s concrete columns on table alias ``alias``, [(index, converters,
    expression)])`` on database ``db``."""
    connection = connections[db]
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    converters = []
    for i, field in enumerate(fields):
        col = field.get_col(alias)
        found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if found:
            converters.append((i, found, col))
    return ", ".join(f"{alias}.{quote(field.column)}" for field in fields), converters


def columns(model, alias: str, db: str) -> str:
    """The select list of ``model``'s concrete columns, its table named ``alias``, in field order."""
    return _columns(model, alias, db)[0]


def width(model) -> int:
    return len(model._meta.concrete_fields)


def build(model, alias: str, db: str, values):
    """The instance of ``model`` from its columns' ``values`` (as :func:`columns` selects them); None
    when the primary key is NULL (the other side of a LEFT JOIN that found nothing)."""
    values = list(values)
    if values[model._meta.concrete_fields.index(model._meta.pk)] is None:
        return None
    connection = connections[db]
    for i, converters, col in _columns(model, alias, db)[1]:
        value = values[i]
        for converter in converters:
            value = converter(value, col, connection)
        values[i] = value
    return model.from_db(db, None, values)


def read_db(model) -> str:
    """The database a read of ``model`` goes to (the primary, or the replica inside ``replica_reads``)."""
    return router.db_for_read(model) or "default"

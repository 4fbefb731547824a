"""``has_member``: a JSON list of strings contains a value, on PostgreSQL and SQLite."""

from django.db.models import JSONField, Lookup


@JSONField.register_lookup
class HasMember(Lookup):
    lookup_name = "has_member"
    prepare_rhs = False

    def get_prep_lookup(self):
        return str(self.rhs)

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} @> jsonb_build_array(%s::text)", [*lhs_params, self.rhs]

    def as_sqlite(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"EXISTS (SELECT 1 FROM json_each({lhs}) WHERE json_each.value = %s)", [*lhs_params, self.rhs]

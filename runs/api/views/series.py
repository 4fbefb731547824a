from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from ... import series as series_store
from ...models import AttributeType
from ..serializers import (
    PointsQuerySerializer,
    SeriesBucketsSerializer,
    SeriesPointsSerializer,
    SeriesQuerySerializer,
)
from .base import RunScopedView


class SeriesView(RunScopedView):
    """Downsampled float series: at most ``buckets`` buckets over a step range."""

    @extend_schema(parameters=[SeriesQuerySerializer], responses=SeriesBucketsSerializer)
    def get(self, request, run_ref):
        query = self.query(SeriesQuerySerializer)
        run = self.get_run()
        attr = self.get_attribute(run, query["path"], {AttributeType.FLOAT_SERIES})
        data = series_store.downsample(
            attr.pk, attr.first_step, attr.last_step, query["buckets"], query.get("from_step"), query.get("to_step")
        )
        return Response({"path": attr.path, "count": attr.count, **data})


class SeriesPointsView(RunScopedView):
    """Raw points of a float or string series, paged by step."""

    @extend_schema(parameters=[PointsQuerySerializer], responses=SeriesPointsSerializer)
    def get(self, request, run_ref):
        query = self.query(PointsQuerySerializer)
        run = self.get_run()
        attr = self.get_attribute(run, query["path"], {AttributeType.FLOAT_SERIES, AttributeType.STRING_SERIES})
        table = series_store.FLOAT_TABLE if attr.type == AttributeType.FLOAT_SERIES else series_store.STRING_TABLE
        data = series_store.read_points(
            attr.pk,
            table,
            after_step=query.get("after_step"),
            from_step=query.get("from_step"),
            to_step=query.get("to_step"),
            limit=query["limit"],
        )
        return Response({"path": attr.path, "type": attr.type, **data})

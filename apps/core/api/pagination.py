from rest_framework import pagination


class CursorPagination(pagination.CursorPagination):
    """Stable pages over growing tables: new rows never shift a page a client is reading."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-id"

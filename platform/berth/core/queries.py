"""A list query whose SQL is compiled once per shape, then run again with each request's values.

Django builds a queryset and compiles its SQL again on every call: for the API's apps list (the membership join,
the current-version subqueries, the certificate check) that was a third of a web worker's CPU a request (py-spy of a
worker under 8 clients: building 17 %, compiling 21 %, running and reading the rows 15 %). The SQL of such a list
depends only on its shape (which filters apply, the page size), not on who asks or from where the page starts: those
are parameters of the SQL, and here they are put in the compiled SQL's places for them, as bound parameters.
"""

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from django.db import connections
from django.db.models import QuerySet
from django.db.models.sql.compiler import SQLCompiler

# stand-ins for the values while a shape is compiled: nothing else in a query is equal to one of them
_MARKS: dict[type, Callable[[int], int | str]] = {
    int: lambda i: -2_000_000_000 - i,  # within a 32-bit integer column's range
    str: lambda i: f"\x1fberth-value-{i}\x1f",
}
MAX_SHAPES = 512  # the least recently used go first (a client may ask for every page size there is)


class _Compiled:
    def __init__(
        self,
        compiler: SQLCompiler,
        sql: str,
        params: tuple,
        slots: dict[str, tuple[int, ...]],
        names: list[str],
    ):
        self.compiler, self.sql, self.params, self.slots, self.names = compiler, sql, params, slots, names

    def rows(self, values: dict[str, int | str]) -> list[dict]:
        if values.keys() != self.slots.keys():  # a shape compiled for other values: never run it without them
            raise ValueError(f"this shape takes {sorted(self.slots)}, not {sorted(values)}")
        params = list(self.params)
        for name, places in self.slots.items():
            for at in places:
                params[at] = values[name]
        run = copy.copy(self.compiler)  # the compiled state (columns, converters); this thread's connection
        run.connection = connections[self.compiler.using]
        sql, bound = self.sql, tuple(params)
        run.as_sql = lambda *args, **kwargs: (sql, bound)  # what execute_sql runs
        names = list(enumerate(self.names))  # a row may carry more columns (ordering's) after these
        return [{name: row[i] for i, name in names} for row in run.results_iter()]


_compiled: OrderedDict[Hashable, _Compiled] = OrderedDict()
_lock = threading.Lock()


def compiled_rows(shape: Hashable, build: Callable[..., QuerySet], **values: int | str) -> list[dict]:
    """The rows of `build(**values)`, a values() queryset, as its dicts.

    Its SQL is compiled on the first call for `shape`, with stand-ins for `values`; later calls run that SQL with
    their own values in the stand-ins' places. `shape` must tell apart everything else that changes the SQL (who
    sees what, whether a filter applies, a page's size). Each value must reach the SQL as it is, as a parameter (in
    one place or several): an int or a str compared with `=`, `>` or `<` (not a `contains`, which escapes and wraps
    it)."""
    with _lock:
        entry = _compiled.get(shape)
        if entry is not None:
            _compiled.move_to_end(shape)
    if entry is None:
        entry = _compile(build, values)
        with _lock:
            _compiled[shape] = entry
            while len(_compiled) > MAX_SHAPES:
                _compiled.popitem(last=False)
    return entry.rows(values)


def has_compiled(shape: Hashable) -> bool:
    """Whether `shape` is compiled already (a caller may prefer not to compile a shape it only guessed)."""
    with _lock:
        return shape in _compiled


def _compile(build: Callable[..., QuerySet], values: dict[str, int | str]) -> _Compiled:
    marks = {name: _MARKS[type(value)](i) for i, (name, value) in enumerate(values.items())}
    queryset = build(**marks)
    query = queryset.query
    compiler = query.get_compiler(queryset.db)
    sql, params = compiler.as_sql()
    slots = {}
    for name, mark in marks.items():
        found = [at for at, param in enumerate(params) if type(param) is type(mark) and param == mark]
        if not found:  # transformed on its way (a `contains` escapes and wraps it): never put in as it is
            raise ValueError(f"{name!r} is not one parameter of the query as it was given (0 found)")
        if str(mark) in sql:  # written into the SQL's text somewhere too: that place would keep the stand-in
            raise ValueError(f"{name!r} is written into the query's text, not only passed as a parameter")
        slots[name] = tuple(found)  # each place the query uses it (a subquery of the same team, say)
    names = (
        list(query.selected)
        if query.selected
        else [
            *query.extra_select,
            *query.values_select,
            *query.annotation_select,
        ]
    )
    compiler.connection = None  # each run takes its own thread's
    return _Compiled(compiler, sql, tuple(params), slots, names)

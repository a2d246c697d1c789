"""The SQL form of each condition agrees with the Python reference of dicom/matching.py.

Hypothesis drives an in-memory SQLite database: its GLOB for the SQLite translation, and its LIKE
with ``case_sensitive_like`` (PostgreSQL's LIKE semantics) for the PostgreSQL translation. The
DB tests in test_search_db.py then run the same translation on a real PostgreSQL server.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    func,
    select,
)

from dicomvault.dicom.matching import (
    Condition,
    DateTimeRange,
    FuzzyPersonName,
    SingleValue,
    Wildcard,
)
from dicomvault.index.search import condition_clause

metadata = MetaData()
values_table = Table(
    "v",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("value", Text),
    Column("n", Integer),
)


@pytest.fixture(scope="module")
def connection() -> Iterator[Connection]:
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        metadata.create_all(conn)
        yield conn
    engine.dispose()


def sql_matches(
    conn: Connection, condition: Condition, values: Sequence[str | None], dialect: str
) -> list[bool]:
    conn.execute(values_table.delete())
    if values:
        conn.execute(values_table.insert(), [{"id": i, "value": v} for i, v in enumerate(values)])
    conn.exec_driver_sql(f"PRAGMA case_sensitive_like={'ON' if dialect != 'sqlite' else 'OFF'}")
    column = values_table.c.value
    if isinstance(condition, FuzzyPersonName):
        column = func.upper(column)  # type: ignore[assignment]
    found = set(
        conn.execute(
            select(values_table.c.id).where(condition_clause(column, condition, dialect=dialect))
        ).scalars()
    )
    return [i in found for i in range(len(values))]


VALUE_TEXT = st.text(alphabet="abAB%_\\[]^ *?", max_size=6)
PATTERN_TEXT = st.text(alphabet="ab%_\\[]^ *?", min_size=1, max_size=6)
DIALECTS = st.sampled_from(["sqlite", "postgresql"])
SETTINGS = settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(PATTERN_TEXT, st.lists(VALUE_TEXT, max_size=5), DIALECTS)
def test_wildcard_sql_agrees_with_reference(
    connection: Connection, pattern: str, values: list[str], dialect: str
) -> None:
    condition = Wildcard(pattern)
    expected = [condition.matches(v) for v in values]
    assert sql_matches(connection, condition, values, dialect) == expected


@SETTINGS
@given(VALUE_TEXT, st.lists(VALUE_TEXT, max_size=5), DIALECTS)
def test_single_value_sql_agrees_with_reference(
    connection: Connection, query: str, values: list[str], dialect: str
) -> None:
    condition = SingleValue(query)
    values = [*values, query]
    assert sql_matches(connection, condition, values, dialect) == [
        condition.matches(v) for v in values
    ]


DATE_TEXT = st.dates(datetime.date(1950, 1, 1), datetime.date(2050, 1, 1)).map(
    lambda d: d.strftime("%Y%m%d")
)


@SETTINGS
@given(
    st.one_of(st.none(), DATE_TEXT),
    st.one_of(st.none(), DATE_TEXT),
    st.lists(st.one_of(DATE_TEXT, st.just(""), st.none()), max_size=6),
)
def test_date_range_sql_agrees_with_reference(
    connection: Connection, low: str | None, high: str | None, values: list[str | None]
) -> None:
    condition = DateTimeRange("DA", low, high)
    expected = [condition.matches(v) for v in values]
    assert sql_matches(connection, condition, values, "sqlite") == expected


NAME_TEXT = st.text(alphabet="abAB^= ,%_", max_size=8)


@SETTINGS
@given(st.text(alphabet="abAB ^%_", max_size=5), st.lists(NAME_TEXT, max_size=5), DIALECTS)
def test_fuzzy_person_name_sql_agrees_with_reference(
    connection: Connection, query: str, values: list[str], dialect: str
) -> None:
    condition = FuzzyPersonName(query)
    expected = [condition.matches(v) for v in values]
    assert sql_matches(connection, condition, values, dialect) == expected

"""integral floats: plyr_bigint reads a JSON number written with a zero fraction as the integer it is

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 09:00:00.000000

In the atproto data model a JSON number such as `180.0` is the integer 180 (the interop data-model vectors say
so, and the lexicon validator accepts it where a lexicon asks for an integer). jsonb keeps the number as
written, so its text is `180.0`, which the first plyr_bigint refused (the projection got NULL). Now a zero
fraction is accepted; any other fraction, and anything of more than 18 digits, still gives NULL. Projections
built before this revision are corrected by `plyr-appview rebuild`.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_BIGINT_FN = r"""
CREATE OR REPLACE FUNCTION plyr_bigint(v jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(v) = 'number' AND (v #>> '{}') ~ '^-?[0-9]{1,18}(\.0*)?$'
              THEN split_part(v #>> '{}', '.', 1)::bigint END
$$
"""

_PREVIOUS_FN = """
CREATE OR REPLACE FUNCTION plyr_bigint(v jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(v) = 'number' AND (v #>> '{}') ~ '^-?[0-9]{1,18}$'
              THEN (v #>> '{}')::bigint END
$$
"""


def upgrade() -> None:
    op.execute(_BIGINT_FN)


def downgrade() -> None:
    op.execute(_PREVIOUS_FN)

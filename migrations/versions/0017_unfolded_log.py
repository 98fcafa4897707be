"""The log's unfolded tail, after a bulk replay

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 09:00:00.000000

`unfolded_log` holds at most one row: present while the log holds events the fold has not applied, which only
`plyr-appview replay --bulk` leaves (it appends to the log without folding, then rebuilds). `after_id` is the
last log id the index reflected when the first unfolded event was appended. Every `rebuild` deletes the row in
the transaction that installs its result; a bulk replay killed before that leaves it, for `status` to report and
for the next rebuild (or bulk replay) to finish.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE unfolded_log (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            after_id bigint NOT NULL,
            since timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE unfolded_log")

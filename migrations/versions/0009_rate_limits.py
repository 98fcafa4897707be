"""rate_limits and service_auth_jtis: counters and token ids shared by every API replica

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:00:00.000000

`rate_limits` holds one row per (policy, subject, window): the units a client (an address or a DID) spent in a
fixed window starting at `window_start` (unix seconds), bumped by one upsert per charge (appview/ratelimit.py).
It is UNLOGGED: no WAL per request, and a crash or failover resets the counters, which only forgives.
`service_auth_jtis` holds the `(issuer, jti)` of every service-auth token accepted, until the token expires, so a
token replayed to another replica is refused there too (appview/auth.py). It is logged: replay protection must
survive a restart. Both are pruned of expired rows by every replica, through their `expires_at` indexes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("policy", "subject", "window_start"),
        prefixes=["UNLOGGED"],
    )
    op.create_index("rate_limits_expires_idx", "rate_limits", ["expires_at"])
    op.create_table(
        "service_auth_jtis",
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("jti", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti"),
    )
    op.create_index("service_auth_jtis_expires_idx", "service_auth_jtis", ["expires_at"])


def downgrade() -> None:
    op.drop_table("service_auth_jtis")
    op.drop_table("rate_limits")

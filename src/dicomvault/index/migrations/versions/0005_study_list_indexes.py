"""studies: indexes for the unfiltered study list and patient name prefixes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 10:05:00

Measured on SQLite with 100,000 studies in one tenant: a page of the study list, newest first,
took 36-57 ms (every row of the tenant sorted by a temporary B-tree) and takes 0.5 ms;
``PatientName=ABC*`` took 22 ms and takes 0.7 ms. On PostgreSQL the name index uses
text_pattern_ops, which lets LIKE 'ABC%' use it whatever the database's locale.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_studies_tenant_pk", "studies", ["tenant", "pk"])
    op.create_index(
        "ix_studies_tenant_patient_name",
        "studies",
        ["tenant", "patient_name"],
        postgresql_ops={"patient_name": "text_pattern_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_studies_tenant_patient_name", table_name="studies")
    op.drop_index("ix_studies_tenant_pk", table_name="studies")

"""request log

Revision ID: 0001
Revises: 
Create Date: 2026-11-28 10:22:54.829485
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('request_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('client_request_id', sa.String(length=64), nullable=True),
    sa.Column('endpoint', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=True),
    sa.Column('model_name', sa.String(length=100), nullable=True),
    sa.Column('model_version', sa.String(length=50), nullable=True),
    sa.Column('input_sha256', sa.String(length=64), nullable=True),
    sa.Column('input_bytes', sa.Integer(), nullable=True),
    sa.Column('input_width', sa.Integer(), nullable=True),
    sa.Column('input_height', sa.Integer(), nullable=True),
    sa.Column('input_mode', sa.String(length=16), nullable=True),
    sa.Column('predicted_label', sa.Integer(), nullable=True),
    sa.Column('class_name', sa.String(length=100), nullable=True),
    sa.Column('probabilities', sa.JSON(), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('predictive_entropy', sa.Float(), nullable=True),
    sa.Column('mutual_information', sa.Float(), nullable=True),
    sa.Column('failure_method', sa.String(length=32), nullable=True),
    sa.Column('failure_score', sa.Float(), nullable=True),
    sa.Column('failure_threshold', sa.Float(), nullable=True),
    sa.Column('failure_flagged', sa.Boolean(), nullable=True),
    sa.Column('ood_method', sa.String(length=32), nullable=True),
    sa.Column('ood_score', sa.Float(), nullable=True),
    sa.Column('ood_threshold', sa.Float(), nullable=True),
    sa.Column('ood_flagged', sa.Boolean(), nullable=True),
    sa.Column('prediction_set', sa.JSON(), nullable=True),
    sa.Column('decision', sa.String(length=16), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('http_status', sa.Integer(), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('request_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_request_log_decision'), ['decision'], unique=False)
        batch_op.create_index(batch_op.f('ix_request_log_model_name'), ['model_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_request_log_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_request_log_request_id'), ['request_id'], unique=True)

    


def downgrade() -> None:
    
    with op.batch_alter_table('request_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_request_log_request_id'))
        batch_op.drop_index(batch_op.f('ix_request_log_received_at'))
        batch_op.drop_index(batch_op.f('ix_request_log_model_name'))
        batch_op.drop_index(batch_op.f('ix_request_log_decision'))

    op.drop_table('request_log')
    

"""Keys: every change to api_keys is announced on the channel cx_keys (LISTEN/NOTIFY).

Each worker keeps the keys it verified in memory and drops a key as soon as its id is announced
(a revocation, any update, a delete); a TRUNCATE announces '*', which drops them all. The
notification is sent when the changing transaction commits, so no worker drops a key that is
not yet changed, and none keeps one after the change is visible.

Revision ID: 5c2d8e41a7b9
Revises: 3b7e91c0d2f4
"""

from __future__ import annotations

from alembic import op

revision: str = "5c2d8e41a7b9"
down_revision: str | None = "3b7e91c0d2f4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION api_keys_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                PERFORM pg_notify('cx_keys', '*');
            ELSE
                PERFORM pg_notify('cx_keys', OLD.id);
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER api_keys_notify_rows AFTER UPDATE OR DELETE ON api_keys
            FOR EACH ROW EXECUTE FUNCTION api_keys_notify()
        """
    )
    op.execute(
        """
        CREATE TRIGGER api_keys_notify_truncate AFTER TRUNCATE ON api_keys
            FOR EACH STATEMENT EXECUTE FUNCTION api_keys_notify()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER api_keys_notify_truncate ON api_keys")
    op.execute("DROP TRIGGER api_keys_notify_rows ON api_keys")
    op.execute("DROP FUNCTION api_keys_notify()")

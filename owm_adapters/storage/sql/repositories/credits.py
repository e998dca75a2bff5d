"""SQL repository: what each L402 token's payment still covers, per-query pricing's credit
(``token_credits``, SRS-API-03), shared by the coordinators on one database (SRS-COORD-05).

Opening a token's credit is an insert that keeps a stored row (``ON CONFLICT DO NOTHING``: the
first use sets it, later uses refill nothing); a charge is one ``UPDATE … WHERE left_msat >=
price RETURNING``, which the database serialises per row, so of many coordinators charging one
token at once exactly as many queries are admitted as its payment covers.
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository


class SqlTokenCreditRepository(SqlRepository):
    """Per-token credits in ``token_credits``."""

    def open(self, token: str, paid_msat: int, until: int) -> None:
        """Know ``token``'s credit unless it is known already (what is left stays)."""
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            conn.execute(
                dialect_insert(t.token_credits)
                .values(token=token, left_msat=paid_msat, until=until)
                .on_conflict_do_nothing()
            )

    def charge(self, token: str, price_msat: int, now: int) -> int | None:
        """Take ``price_msat`` from ``token``'s credit if it covers it and has not expired."""
        c = t.token_credits.c
        with self._db.tx(write=True) as conn:
            left = conn.execute(
                update(t.token_credits)
                .where((c.token == token) & (c.left_msat >= price_msat) & (c.until > now))
                .values(left_msat=c.left_msat - price_msat)
                .returning(c.left_msat)
            ).scalar()
        return None if left is None else int(left)

    def refund(self, token: str, price_msat: int) -> None:
        """Give ``price_msat`` back to ``token``'s credit (nothing if it is not known)."""
        c = t.token_credits.c
        with self._db.tx(write=True) as conn:
            conn.execute(
                update(t.token_credits)
                .where(c.token == token)
                .values(left_msat=c.left_msat + price_msat)
            )

    def forget_expired(self, now: int) -> int:
        """Drop the credits of tokens whose access ended at or before ``now``; how many."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(delete(t.token_credits).where(t.token_credits.c.until <= now))
        return int(done.rowcount)

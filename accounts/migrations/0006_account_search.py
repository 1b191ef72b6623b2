"""Account search that ignores case and accents, by words in any order or by the start of an id.

pg_trgm indexes the owner's name folded to lower case without accents, so "zoe
hol" finds "Zoë Holmes" through an index at millions of accounts. unaccent() is
only STABLE (it reads a dictionary that could change), so an index cannot use it
directly: accounts_folded() wraps it with the dictionary named, and is declared
IMMUTABLE, the usual way to index it. The id's text gets a pattern index for
prefixes. Both extensions ship with PostgreSQL's contrib (and the embedded server)
and are trusted: the database owner may create them.
"""

from django.db import migrations

SEARCH = """
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public;
CREATE FUNCTION public.accounts_folded(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT pg_catalog.lower(public.unaccent('public.unaccent'::pg_catalog.regdictionary, $1)) $$;
CREATE INDEX account_owner_folded ON public.account_read_model
    USING gin (public.accounts_folded(owner) public.gin_trgm_ops);
CREATE INDEX account_id_text ON public.account_read_model ((account_id::text) text_pattern_ops);
"""
NO_SEARCH = """
DROP INDEX public.account_id_text;
DROP INDEX public.account_owner_folded;
DROP FUNCTION public.accounts_folded(text);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_daily_turnover_in_numeric"),
    ]

    operations = [migrations.RunSQL(SEARCH, NO_SEARCH)]

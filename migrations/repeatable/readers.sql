-- Readers: the schema applications query. Each `readers.<table>` is a view over either the
-- maintained table (`public`, the normal state) or its reference view (`snapshot`, a full
-- recompute from the event log). Switching is the rollback path of the seed's plan without
-- its cost: nothing is dropped, the engine keeps writing the event log and the maintained
-- tables the whole time, so switching back is instant and loses nothing.
--
--   SELECT use_reference_views();                 -- every reader table, or
--   SELECT use_reference_views(ARRAY['triple_term']);
--   SELECT use_maintained_tables();
--   SELECT * FROM readers_sources();              -- where each view reads from now
--   SELECT * FROM rebuild_from_reference();       -- repair the maintained tables
--
-- Give application roles USAGE on schema readers and SELECT on its views only: a view runs
-- with its owner's rights, so they need no access to public or snapshot.
CREATE OR REPLACE FUNCTION reader_tables() RETURNS TEXT[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['atom', 'triple', 'position', 'vault', 'term',
                 'triple_vault', 'triple_term', 'predicate_object', 'subject_predicate']
$$;

-- Point readers.<table_name> at source ('public' or 'snapshot').
--
-- The view always exposes the maintained table's column names, types and collations: the
-- reference side is cast to them. CREATE OR REPLACE VIEW then swaps the source in place,
-- so grants on the view and views that applications built on top of it survive a switch,
-- and readers waiting on the view see either source, never a missing relation.
CREATE OR REPLACE FUNCTION readers_point(table_name TEXT, source TEXT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cols TEXT;
BEGIN
    IF source NOT IN ('public', 'snapshot') THEN
        RAISE EXCEPTION 'reader source must be public or snapshot, not %', source;
    END IF;
    IF NOT table_name = ANY (reader_tables()) THEN
        RAISE EXCEPTION 'unknown reader table %; expected one of %', table_name, reader_tables();
    END IF;
    SELECT string_agg(
               CASE WHEN source = 'public' THEN quote_ident(a.attname)
                    ELSE format('%I::%s%s AS %I', a.attname, format_type(a.atttypid, a.atttypmod),
                                coalesce(' COLLATE ' || (SELECT format('%I.%I', n.nspname, c.collname)
                                                           FROM pg_collation c
                                                           JOIN pg_namespace n ON n.oid = c.collnamespace
                                                          WHERE c.oid = a.attcollation), ''),
                                a.attname)
               END, ', ' ORDER BY a.attnum)
      INTO cols
      FROM pg_attribute a
     WHERE a.attrelid = format('public.%I', table_name)::regclass AND a.attnum > 0 AND NOT a.attisdropped;
    EXECUTE format('CREATE OR REPLACE VIEW readers.%I AS SELECT %s FROM %I.%I',
                   table_name, cols, source, table_name);
END
$$;

-- Where each reader view reads from now: 'public', 'snapshot', or NULL if the view is gone.
-- Read from the catalog (the view's rewrite rule dependencies), so it cannot go stale.
CREATE OR REPLACE FUNCTION readers_sources() RETURNS TABLE (table_name TEXT, source TEXT)
LANGUAGE sql STABLE AS $$
    SELECT t, (SELECT min(n.nspname)
                 FROM pg_rewrite r
                 JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                                 AND d.refclassid = 'pg_class'::regclass
                 JOIN pg_class c ON c.oid = d.refobjid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE r.ev_class = to_regclass(format('readers.%I', t))
                  AND c.relname = t AND n.nspname IN ('public', 'snapshot'))::text
      FROM unnest(reader_tables()) WITH ORDINALITY AS u(t, i)
     ORDER BY i
$$;

-- 'maintained' when every reader view reads its maintained table, 'reference' when every
-- one reads its snapshot view, 'mixed' otherwise.
CREATE OR REPLACE FUNCTION readers_mode() RETURNS TEXT LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN bool_and(source IS NOT DISTINCT FROM 'public') THEN 'maintained'
                WHEN bool_and(source IS NOT DISTINCT FROM 'snapshot') THEN 'reference'
                ELSE 'mixed' END
      FROM readers_sources()
$$;

-- Switch the given tables (default: all) in one transaction, always in reader_tables()
-- order, so two concurrent switches queue on the first view instead of deadlocking.
CREATE OR REPLACE FUNCTION readers_switch(tables TEXT[], source TEXT) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    t TEXT;
    unknown TEXT[];
BEGIN
    unknown := ARRAY(SELECT x FROM unnest(tables) x WHERE NOT x = ANY (reader_tables()));
    IF cardinality(unknown) > 0 THEN
        RAISE EXCEPTION 'unknown reader table(s) %; expected some of %', unknown, reader_tables();
    END IF;
    FOREACH t IN ARRAY reader_tables() LOOP
        IF tables IS NULL OR t = ANY (tables) THEN
            PERFORM readers_point(t, source);
        END IF;
    END LOOP;
    RETURN readers_mode();
END
$$;

CREATE OR REPLACE FUNCTION use_reference_views(tables TEXT[] DEFAULT NULL) RETURNS TEXT LANGUAGE sql AS $$
    SELECT readers_switch(tables, 'snapshot')
$$;

CREATE OR REPLACE FUNCTION use_maintained_tables(tables TEXT[] DEFAULT NULL) RETURNS TEXT LANGUAGE sql AS $$
    SELECT readers_switch(tables, 'public')
$$;

-- Repair: recompute maintained tables from the event log through their reference views,
-- e.g. after events were logged while a merge trigger was disabled (redelivery cannot fix
-- that: those events are already in the log, so their inserts are no-ops). SHARE locks on
-- the event log hold engine batches back until the copy commits, so the rebuilt tables
-- match the log exactly; readers keep reading throughout. Returns the rows written.
CREATE OR REPLACE FUNCTION rebuild_from_reference(tables TEXT[] DEFAULT NULL)
RETURNS TABLE (table_name TEXT, row_count BIGINT) LANGUAGE plpgsql AS $$
DECLARE
    t TEXT;
    unknown TEXT[];
BEGIN
    unknown := ARRAY(SELECT x FROM unnest(tables) x WHERE NOT x = ANY (reader_tables()));
    IF cardinality(unknown) > 0 THEN
        RAISE EXCEPTION 'unknown table(s) %; expected some of %', unknown, reader_tables();
    END IF;
    -- Pair rows are kept as sums of triple_term rows, by delta (analytics.sql): rebuilt
    -- apart from each other, the next delta would land on a base it was not taken from.
    IF tables && ARRAY['triple_term', 'predicate_object', 'subject_predicate'] THEN
        tables := tables || ARRAY['triple_term', 'predicate_object', 'subject_predicate'];
    END IF;
    -- The event log first, as every batch takes its locks: a batch in flight finishes
    -- and the next one waits, instead of the two deadlocking.
    LOCK TABLE atom_created_events, triple_created_events, deposited_events, redeemed_events,
               share_price_changed_events IN SHARE MODE;
    FOREACH t IN ARRAY reader_tables() LOOP
        IF tables IS NULL OR t = ANY (tables) THEN
            EXECUTE format('LOCK TABLE public.%I IN EXCLUSIVE MODE', t);
            EXECUTE format('DELETE FROM public.%I', t);
            EXECUTE format('INSERT INTO public.%1$I SELECT * FROM snapshot.%1$I', t);
            table_name := t;
            GET DIAGNOSTICS row_count = ROW_COUNT;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

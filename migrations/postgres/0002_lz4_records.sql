-- The redacted records (about 3 kB each) are TOASTed; PostgreSQL's default pglz
-- compression was the largest single cost of a first sync (8% of the server's time).
-- lz4 compresses about as well at a fraction of the cost. Servers built without lz4
-- keep pglz: this migration then changes nothing. Rows already stored keep their
-- compression until they are rewritten.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_settings
        WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)
    ) THEN
        ALTER TABLE sources ALTER COLUMN raw_record SET COMPRESSION lz4;
        ALTER TABLE source_versions ALTER COLUMN record SET COMPRESSION lz4;
    END IF;
END
$$;

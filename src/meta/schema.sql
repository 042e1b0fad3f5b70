-- boostvol metadata schema, version 1 (FAST/meta.db, SQLite in WAL mode).
--
-- This file is the one place the schema is defined. It is compiled into the
-- binary (generated/schema_sql.h) and executed once, inside the transaction
-- that creates a volume; the code then sets PRAGMA user_version = 1
-- (meta::kSchemaVersion) and PRAGMA application_id. docs/metadata.md explains
-- each table for people, with example queries.
--
-- Rules:
--  - Nothing here is on the per-write path. Rows change per batch of sealed
--    segments, per migration batch, at mount, at a clean stop and when the
--    counters are saved (every few seconds).
--  - The code treats every value read back as untrusted and checks it; the
--    CHECK constraints below only keep hand edits honest.
--  - Times are seconds since the Unix epoch (UTC). Sizes are bytes unless the
--    column name says blocks (4096 bytes). Sequence numbers are unsigned
--    64-bit values stored as INTEGER (they never reach 2^63).
--  - Tables are STRICT: a value of the wrong type is refused on write.
--  - Keep this file free of the at-sign: CMake's configure_file would eat it.

-- The volume: identity and geometry (fixed at create) and the mount state.
-- Exactly one row, id = 1.
CREATE TABLE volume (
  id              INTEGER PRIMARY KEY CHECK (id = 1),  -- always 1: the table has one row
  uuid            TEXT    NOT NULL,  -- the volume's UUID, lowercase 8-4-4-4-12; also in every log record and the home stamp
  format_version  INTEGER NOT NULL,  -- on-disk format of the volume (log, home); 1
  image_size      INTEGER NOT NULL,  -- size of the image in bytes; a multiple of block_size
  block_size      INTEGER NOT NULL,  -- bytes per block; always 4096
  segment_blocks  INTEGER NOT NULL,  -- blocks per log segment (log_format.h: 4 .. 65536)
  segment_count   INTEGER NOT NULL,  -- segments in the ring (>= 3); the log is segment_count * segment_blocks blocks
  home            TEXT    NOT NULL,  -- where the home copy lives: "dir:/absolute/path/of/SLOW"
  created_unix    INTEGER NOT NULL,  -- when the volume was created
  home_journal    INTEGER NOT NULL CHECK (home_journal IN (0, 1)),  -- 1: migration batches go through a redo journal on SLOW, so SLOW alone is crash-consistent (DESIGN.md 2.7); 0: it is not
  clean_shutdown  INTEGER NOT NULL CHECK (clean_shutdown IN (0, 1)),  -- 1: the last daemon stopped cleanly and left a checkpoint; 0: mounted now, or it crashed
  mount_count     INTEGER NOT NULL,  -- how many times the volume has been mounted
  last_mount_unix INTEGER,           -- when it was last mounted; NULL if never
  last_stop_unix  INTEGER            -- when it last stopped cleanly; NULL if never
) STRICT;

-- The log's ring: one row per slot of FAST/log (slot 0 .. segment_count-1).
-- Segment seq S lives in slot S % segment_count. A slot is 'sealed' from the
-- moment its segment's records are all durable in the log until every block
-- in it is durable at home; then it is 'free' and may be reused.
-- The segment being written into is not sealed yet: its row stays 'free'.
CREATE TABLE segments (
  slot         INTEGER PRIMARY KEY,  -- slot in FAST/log: byte offset slot * segment_blocks * 4096
  segment_seq  INTEGER,              -- sequence number of the segment it holds; NULL when free
  state        TEXT    NOT NULL CHECK (state IN ('free', 'sealed')),  -- 'sealed': holds records not yet home; 'free': reusable
  first_record INTEGER,              -- first record seq in the segment (inclusive); NULL when free
  last_record  INTEGER,              -- last record seq in the segment (inclusive); NULL when free
  data_blocks  INTEGER,              -- data blocks in the segment (header blocks not counted); NULL when free
  sealed_unix  INTEGER               -- when it was sealed; NULL when free
) STRICT;
-- Sealed segments in seq order (and no two sealed rows with one seq).
CREATE UNIQUE INDEX segments_sealed_by_seq ON segments (segment_seq) WHERE state = 'sealed';

-- The migration watermark: everything in the log before (segment_seq,
-- record_seq) is durable at home; recovery replays the log from here. One row,
-- id = 1. The home stamp on SLOW (boostvol-home) carries the same watermark
-- and is the authority when the two differ (docs/metadata.md).
CREATE TABLE watermark (
  id           INTEGER PRIMARY KEY CHECK (id = 1),  -- always 1
  segment_seq  INTEGER NOT NULL,  -- first segment not entirely home (0 for a new volume)
  record_seq   INTEGER NOT NULL,  -- first record not home (1 for a new volume)
  updated_unix INTEGER NOT NULL   -- when the watermark last moved
) STRICT;

-- The index checkpoint written at a clean stop, so the next mount reads no
-- log. At most one row (id = 1); deleted when the volume is mounted again, so
-- a crash never leaves a stale checkpoint behind.
CREATE TABLE checkpoint (
  id                     INTEGER PRIMARY KEY CHECK (id = 1),  -- always 1
  next_record_seq        INTEGER NOT NULL,  -- tail: seq the next record gets
  segment_seq            INTEGER NOT NULL,  -- tail: segment the next record goes into
  next_block_in_segment  INTEGER NOT NULL,  -- tail: block offset in that segment where it goes
  prev_crc               INTEGER NOT NULL,  -- tail: header_crc of record next_record_seq - 1 (the chain, log_format.h)
  watermark_segment_seq  INTEGER NOT NULL,  -- the migration watermark when the checkpoint was taken
  watermark_record_seq   INTEGER NOT NULL,  -- (same)
  entry_count            INTEGER NOT NULL,  -- entries in the index: cached blocks whose newest copy is in the log
  entries                BLOB    NOT NULL,  -- entry_count entries of 12 bytes, little-endian: u32 lba (image block), u32 pos (log block), u32 crc (block_crc of that copy)
  entries_crc            INTEGER NOT NULL,  -- crc32c of the entries blob
  created_unix           INTEGER NOT NULL   -- when the checkpoint was written (the clean stop)
) STRICT;

-- Counters as totals over the volume's life (name -> value), saved every few
-- seconds and at stop. Names under 'migration.' are added to by each
-- committed migration batch (blocks, bytes, extents, batches).
CREATE TABLE counters (
  name  TEXT PRIMARY KEY,   -- e.g. 'migration.bytes'; words joined by '_' or '.'
  value INTEGER NOT NULL    -- the total
) STRICT;

-- History of the counters: one row per counter per save, the last 1000 rows
-- of each name are kept (older ones are trimmed at each save).
CREATE TABLE counters_history (
  id    INTEGER PRIMARY KEY,  -- append order
  unix  INTEGER NOT NULL,     -- when the value was saved
  name  TEXT    NOT NULL,     -- counter name (as in counters.name)
  value INTEGER NOT NULL      -- its total at that time
) STRICT;
CREATE INDEX counters_history_by_name ON counters_history (name, id);

-- Settings (key -> text value), changed rarely: tunables a person set for
-- this volume, kept across mounts.
CREATE TABLE settings (
  key          TEXT PRIMARY KEY,  -- setting name, e.g. 'migrate_start_fraction'
  value        TEXT NOT NULL,     -- its value, as text
  updated_unix INTEGER NOT NULL   -- when it was last set
) STRICT;

-- Views for people (sqlite3 FAST/meta.db 'select * from status').
-- Sizes are shown both in bytes and "8.0 GiB" style (binary units).

-- One row: what the volume is and where it stands.
CREATE VIEW status AS
SELECT
  v.uuid AS uuid,
  v.image_size AS image_bytes,
  CASE
    WHEN v.image_size >= 1099511627776 THEN printf('%.1f TiB', v.image_size / 1099511627776.0)
    WHEN v.image_size >= 1073741824 THEN printf('%.1f GiB', v.image_size / 1073741824.0)
    WHEN v.image_size >= 1048576 THEN printf('%.1f MiB', v.image_size / 1048576.0)
    WHEN v.image_size >= 1024 THEN printf('%.1f KiB', v.image_size / 1024.0)
    ELSE printf('%d B', v.image_size)
  END AS image,
  v.segment_count * v.segment_blocks * v.block_size AS cache_bytes,
  CASE
    WHEN v.segment_count * v.segment_blocks * v.block_size >= 1099511627776
      THEN printf('%.1f TiB', v.segment_count * v.segment_blocks * v.block_size / 1099511627776.0)
    WHEN v.segment_count * v.segment_blocks * v.block_size >= 1073741824
      THEN printf('%.1f GiB', v.segment_count * v.segment_blocks * v.block_size / 1073741824.0)
    WHEN v.segment_count * v.segment_blocks * v.block_size >= 1048576
      THEN printf('%.1f MiB', v.segment_count * v.segment_blocks * v.block_size / 1048576.0)
    ELSE printf('%.1f KiB', v.segment_count * v.segment_blocks * v.block_size / 1024.0)
  END AS cache,
  (SELECT count(*) FROM segments WHERE state = 'sealed') AS segments_live,
  v.segment_count AS segments_total,
  printf('%.1f MiB', v.segment_blocks * v.block_size / 1048576.0) AS segment_size,
  CASE v.clean_shutdown WHEN 1 THEN 'yes' ELSE 'no' END AS clean_shutdown,
  v.mount_count AS mount_count,
  (SELECT printf('segment %d, record %d', w.segment_seq, w.record_seq) FROM watermark w WHERE w.id = 1) AS watermark,
  v.home AS home,
  CASE v.home_journal WHEN 1 THEN 'yes' ELSE 'NO (home is not crash-consistent without FAST)' END AS home_journal,
  datetime(v.created_unix, 'unixepoch') AS created_utc,
  datetime(v.last_mount_unix, 'unixepoch') AS last_mount_utc,
  datetime(v.last_stop_unix, 'unixepoch') AS last_clean_stop_utc
FROM volume v
WHERE v.id = 1;

-- Sealed segments (records in the log, not yet home), oldest first.
CREATE VIEW segments_live AS
SELECT
  s.segment_seq AS segment_seq,
  s.slot AS slot,
  s.first_record AS first_record,
  s.last_record AS last_record,
  s.last_record - s.first_record + 1 AS records,
  s.data_blocks AS data_blocks,
  round(s.data_blocks * 4096 / 1048576.0, 1) AS data_mib,
  datetime(s.sealed_unix, 'unixepoch') AS sealed_utc
FROM segments s
WHERE s.state = 'sealed'
ORDER BY s.segment_seq;

-- Counters with readable names; values of byte counters (a name with 'bytes'
-- in it) also as sizes.
CREATE VIEW stats AS
SELECT
  c.name AS name,
  CASE c.name
    WHEN 'migration.blocks' THEN 'blocks migrated home'
    WHEN 'migration.bytes' THEN 'bytes migrated home'
    WHEN 'migration.extents' THEN 'extents written home (after merging)'
    WHEN 'migration.batches' THEN 'migration batches committed'
    ELSE replace(replace(c.name, '.', ': '), '_', ' ')
  END AS what,
  c.value AS value,
  CASE
    WHEN c.name NOT LIKE '%bytes%' THEN ''
    WHEN c.value >= 1099511627776 THEN printf('%.1f TiB', c.value / 1099511627776.0)
    WHEN c.value >= 1073741824 THEN printf('%.1f GiB', c.value / 1073741824.0)
    WHEN c.value >= 1048576 THEN printf('%.1f MiB', c.value / 1048576.0)
    WHEN c.value >= 1024 THEN printf('%.1f KiB', c.value / 1024.0)
    ELSE printf('%d B', c.value)
  END AS human
FROM counters c
ORDER BY c.name;

-- ---------------------------------------------------------------------------
-- Additions to version 1. Everything below this marker is idempotent and is
-- also run at every read-write open (MetaStore::Open), so a volume created
-- before an addition gains it at its next mount; older boostvols ignore it.
-- Only tables an older boostvol can do without, and views, go here.
-- BOOSTVOL-SCHEMA-ADDITIONS

-- The image blocks each sealed segment holds, as runs: written in the same
-- transaction that marks the segment sealed (from the segment's record
-- headers, read back from the log in the background, never on the write
-- path). Rows of a segment that is home, or whose slot now holds another
-- segment, are stale: the view dirty_extents joins on segments and ignores
-- them; CommitMigration deletes them. A segment with very many runs has
-- nearby runs merged (at most 64 rows per segment): then blocks >
-- dirty_blocks and the gap blocks in between are not dirty.
CREATE TABLE IF NOT EXISTS segment_extents (
  segment_seq  INTEGER NOT NULL,  -- the sealed segment (as in segments.segment_seq)
  slot         INTEGER NOT NULL,  -- its slot (segments.slot)
  first_block  INTEGER NOT NULL,  -- first image block of the run (byte offset first_block * 4096)
  blocks       INTEGER NOT NULL CHECK (blocks > 0),  -- length of the run in blocks
  dirty_blocks INTEGER NOT NULL,  -- blocks of the run the segment holds (= blocks unless runs were merged)
  PRIMARY KEY (segment_seq, first_block)
) STRICT;

-- Dirty extents: runs of image blocks with a copy in a sealed segment (in the
-- log, not yet home), overlapping and adjacent runs of all sealed segments
-- merged, in block order. Not shown: the blocks of the segment being written
-- into (not sealed yet; `boostvol status` counts them in dirty_blocks).
-- exact = 'no' when a segment had too many runs to store each one: the
-- extent then also covers clean blocks between dirty ones.
DROP VIEW IF EXISTS dirty_extents;
CREATE VIEW dirty_extents AS
WITH runs AS (
  SELECT e.first_block AS a, e.first_block + e.blocks AS b, e.blocks - e.dirty_blocks AS clean,
         s.segment_seq AS seg, s.sealed_unix AS sealed
  FROM segment_extents e
  JOIN segments s ON s.slot = e.slot AND s.state = 'sealed' AND s.segment_seq = e.segment_seq
),
starts AS (
  SELECT *, CASE WHEN a <= max(b) OVER (ORDER BY a, b ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                 THEN 0 ELSE 1 END AS new_extent
  FROM runs
),
grouped AS (
  SELECT *, sum(new_extent) OVER (ORDER BY a, b ROWS UNBOUNDED PRECEDING) AS extent FROM starts
)
SELECT
  min(a) AS first_block,
  max(b) - 1 AS last_block,
  max(b) - min(a) AS blocks,
  min(a) * 4096 AS offset_bytes,
  CASE
    WHEN (max(b) - min(a)) * 4096 >= 1073741824 THEN printf('%.1f GiB', (max(b) - min(a)) * 4096 / 1073741824.0)
    WHEN (max(b) - min(a)) * 4096 >= 1048576 THEN printf('%.1f MiB', (max(b) - min(a)) * 4096 / 1048576.0)
    ELSE printf('%.1f KiB', (max(b) - min(a)) * 4096 / 1024.0)
  END AS size,
  count(DISTINCT seg) AS segments,
  CASE WHEN max(clean) > 0 THEN 'no' ELSE 'yes' END AS exact,
  datetime(min(sealed), 'unixepoch') AS oldest_sealed_utc
FROM grouped
GROUP BY extent
ORDER BY first_block;

-- The counters over time: one row per counter per save (counters_history),
-- with the change since the previous save of that counter and the rate.
-- dirty_blocks is a level, not a total: its delta is the change (may be
-- negative). A total that went down (a meta.db restored from a backup, or
-- saved by a boostvol that counted per mount) starts over: delta = value.
DROP VIEW IF EXISTS stats_history;
CREATE VIEW stats_history AS
WITH d AS (
  SELECT h.id AS id, h.name AS name, h.unix AS unix, h.value AS value,
         h.unix - lag(h.unix) OVER w AS seconds,
         CASE
           WHEN lag(h.value) OVER w IS NULL THEN NULL
           WHEN h.name = 'dirty_blocks' OR h.value >= lag(h.value) OVER w THEN h.value - lag(h.value) OVER w
           ELSE h.value
         END AS delta
  FROM counters_history h
  WINDOW w AS (PARTITION BY h.name ORDER BY h.id)
)
SELECT
  name,
  datetime(unix, 'unixepoch') AS utc,
  value,
  seconds,
  delta,
  CASE WHEN seconds > 0 THEN round(delta * 1.0 / seconds, 1) END AS per_s,
  CASE
    WHEN seconds IS NULL OR seconds <= 0 OR name NOT LIKE '%bytes%' THEN ''
    WHEN abs(delta) / seconds >= 1073741824 THEN printf('%.1f GiB/s', delta / 1073741824.0 / seconds)
    WHEN abs(delta) / seconds >= 1048576 THEN printf('%.1f MiB/s', delta / 1048576.0 / seconds)
    WHEN abs(delta) / seconds >= 1024 THEN printf('%.1f KiB/s', delta / 1024.0 / seconds)
    ELSE printf('%d B/s', delta / seconds)
  END AS rate
FROM d
ORDER BY id;

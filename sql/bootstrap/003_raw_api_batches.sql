-- One row per pull of one account for one partition: the unit that staging reads.
-- A batch is `complete` when every response of the pull landed; `failed` keeps the reason
-- (source, account and cause, never a token) while its landed responses stay in api_snapshots.
create table if not exists raw.api_batches (
    batch_id        varchar primary key,
    vendor          varchar not null,
    account_id      varchar not null,
    partition_key   varchar not null,
    status          varchar not null,   -- complete | failed
    error           varchar,
    snapshot_count  integer not null,
    started_at      timestamptz not null,
    finished_at     timestamptz not null
);
create index if not exists api_batches_lookup on raw.api_batches (vendor, partition_key, account_id, status);
